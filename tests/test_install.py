"""A regular (non-editable) install carries every package, the migrations and both commands; the
server needs nothing of the mount's (pyfuse3, trio: the ``fs`` extra)."""
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from oaio_testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def test_regular_install_into_a_venv(tmp_path):
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', str(ROOT)], check=True, cwd=tmp_path)
    probe = ('import oaio.protocol, oaio.client, oaio.fs.cli, oaio.server.cli, importlib.resources as r;'
             'print(oaio.server.cli.__file__);'
             'print(sorted(p.name for p in r.files("oaio.server.migrations").iterdir() if p.suffix == ".py"))')
    out = subprocess.run([str(python), '-c', probe], check=True, cwd=tmp_path, capture_output=True, text=True).stdout
    location, migrations = out.splitlines()
    assert location.startswith(str(venv)), location                     # not the source tree
    assert '0001_initial.py' in migrations
    for command in ('oaio', 'oaio-server'):
        result = subprocess.run([str(venv / 'bin' / command), '--help'], capture_output=True, text=True)
        assert result.returncode == 0 and 'usage:' in result.stdout, result.stderr


def test_only_the_fs_extra_brings_pyfuse3_and_trio():
    required = importlib.metadata.requires('oaio')
    fuse = [line for line in required if line.startswith(('pyfuse3', 'trio'))]
    assert fuse and all('extra == "fs"' in line for line in fuse), required
    # ==3.5.0 keeps contrib/pyfuse3/build's 3.5.0+oaio.1 on a reinstall (a local version meets a public pin)
    assert any(line.startswith('pyfuse3==3.5.0') for line in fuse), fuse


def hide_mount_packages(tmp_path) -> dict:
    """An environment in which ``import pyfuse3`` and ``import trio`` fail, as in a server-only install."""
    hidden = tmp_path / 'hidden'
    hidden.mkdir()
    for name in ('pyfuse3', 'trio'):
        (hidden / f'{name}.py').write_text(f'raise ModuleNotFoundError("No module named {name!r}", name={name!r})\n')
    return dict(os.environ, PYTHONPATH=str(hidden), OAIO_PASSWORD_HASHER='fast')


def test_the_server_runs_without_pyfuse3_and_trio(tmp_path):
    server = ServerProcess(data=tmp_path / 'data', env=hide_mount_packages(tmp_path))
    server.start()                      # answers current_stamp/
    try:
        assert server.adduser('alice') == 'alice'
    finally:
        assert server.stop() == 0, server.log()



def test_oaio_mount_without_pyfuse3_says_in_one_line_what_to_install(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'oaio.fs.cli', 'mount', 'localhost:1', str(tmp_path / 'mnt'),
                             '--user', 'alice'], env=hide_mount_packages(tmp_path), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count('\n') == 1 and "pip install 'oaio[fs]'" in result.stderr, result.stderr
    assert not (tmp_path / 'mnt').exists()
