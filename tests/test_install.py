"""A regular (non-editable) install carries every package, the migrations and both commands."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_regular_install_into_a_venv(tmp_path):
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', str(ROOT)], check=True, cwd=tmp_path)
    probe = ('import oaio.client, oaio.fs.cli, oaio.server.cli, importlib.resources as r;'
             'print(oaio.server.cli.__file__);'
             'print(sorted(p.name for p in r.files("oaio.server.migrations").iterdir() if p.suffix == ".py"))')
    out = subprocess.run([str(python), '-c', probe], check=True, cwd=tmp_path, capture_output=True, text=True).stdout
    location, migrations = out.splitlines()
    assert location.startswith(str(venv)), location                     # not the source tree
    assert '0001_initial.py' in migrations
    for command in ('oaio', 'oaio-server'):
        result = subprocess.run([str(venv / 'bin' / command), '--help'], capture_output=True, text=True)
        assert result.returncode == 0 and 'usage:' in result.stdout, result.stderr
