"""contrib/quickstart, the README's first command, for real: it installs this checkout into a venv of
its own (not the system's Python), links ``oaio`` and ``oaio-server`` into a bin directory, builds the
extended pyfuse3 into that venv, starts a server and mounts the drive. 75 s to nearly 3 min on 2 cores
(pip fetches the dependencies and builds pyfuse3 twice, the plain and the extended), so it is marked slow;
the scripts' syntax and shellcheck are checked in no time."""
import importlib.metadata
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from oaio_testing import free_port

QUICKSTART = Path(__file__).resolve().parent.parent / 'contrib' / 'quickstart'
SECONDS = 400

SCRIPTS = [QUICKSTART, QUICKSTART.parent / 'pyfuse3' / 'build']


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda path: path.name)
def test_the_install_scripts_pass_bash_and_shellcheck(script):
    result = subprocess.run(['bash', '-n', str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    if not shutil.which('shellcheck'):
        pytest.skip('no shellcheck')
    result = subprocess.run(['shellcheck', str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 60)
def test_quickstart_installs_into_its_venv_and_mounts(tmp_path):
    venv, bin_dir, data, drive = tmp_path / 'venv', tmp_path / 'bin', tmp_path / 'data', tmp_path / 'drive'
    env = dict(os.environ, OAIO_VENV=str(venv), OAIO_BIN=str(bin_dir), OAIO_DATA=str(data), OAIO_DRIVE=str(drive),
               OAIO_PORT=str(free_port()), OAIO_USER='quickstart')
    # watchdog: a hung FUSE call cannot be interrupted; a lazy unmount ends it and fails the test
    watchdog = threading.Timer(SECONDS, subprocess.run, [['fusermount3', '-u', '-z', str(drive)]])
    watchdog.start()
    try:
        result = subprocess.run([str(QUICKSTART)], env=env, capture_output=True, text=True, timeout=SECONDS,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout + result.stderr
        assert os.path.ismount(drive) and (drive / 'Welcome' / 'values.json').is_file()
        for command in ('oaio', 'oaio-server'):
            link = bin_dir / command
            assert os.readlink(link) == str(venv / 'bin' / command)
            answer = subprocess.run([str(link), '--version'], capture_output=True, text=True, timeout=60)
            assert answer.stdout == f"oaio {importlib.metadata.version('oaio')}\n", answer.stderr
        probe = 'import oaio.fs.cli, pyfuse3; print(oaio.fs.cli.__file__); print(pyfuse3.__version__)'
        location, pyfuse3_version = subprocess.run([str(venv / 'bin' / 'python'), '-c', probe], capture_output=True,
                                                   text=True, check=True, cwd=tmp_path).stdout.split()
        assert location.startswith(str(venv)), location             # a copy in the venv, not this checkout
        assert pyfuse3_version == '3.5.0+oaio.1'                    # contrib/pyfuse3/build reached the venv
        umount = subprocess.run([str(bin_dir / 'oaio'), 'umount', str(drive)], capture_output=True, text=True,
                                timeout=90)
        assert umount.returncode == 0, umount.stderr
    finally:
        watchdog.cancel()
        if os.path.ismount(drive):
            subprocess.run(['fusermount3', '-u', '-z', str(drive)], check=False)
        stop_server(data)


def stop_server(data: Path) -> None:
    """Stop the server quickstart started, by the pid it recorded (if that process serves ``data``)."""
    try:
        pid = int((data / 'server.pid').read_text())
        command = Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
    except (FileNotFoundError, ValueError):
        return
    if str(data).encode() not in command:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while Path(f'/proc/{pid}').exists() and time.monotonic() < deadline:
        time.sleep(0.1)
