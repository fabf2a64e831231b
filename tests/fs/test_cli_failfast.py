"""`oaio mount` fails fast and says why: a non-empty mountpoint, an unreachable server on the first
mount (with a cache it mounts offline, with a warning). Every mount here is unmounted afterwards."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from oaio_testing import PASSWORD, free_port

WATCHDOG_SECONDS = 120


def oaio(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'oaio.fs.cli', *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class Drive:
    """``oaio mount`` (returning once mounted) of user alice on ``base/mnt`` with the cache ``base/cache``."""

    def __init__(self, base: Path):
        self.path, self.cache, self.password_file = base / 'mnt', base / 'cache', base / 'password'
        self.path.mkdir(parents=True)
        self.password_file.write_text(PASSWORD + '\n')
        os.chmod(self.password_file, 0o600)
        self.pids: list[int] = []

    def mount(self, server: str, *extra: str) -> subprocess.CompletedProcess:
        result = oaio('mount', server, str(self.path), '--user', 'alice', '--password-file', str(self.password_file),
                      '--cache', str(self.cache), '--device', 'dev1', *extra)
        if os.path.ismount(self.path):
            self.pids.append(int(os.getxattr(self.path, 'user.oaio.pid')))
        return result

    def umount(self) -> None:
        """Unmount (lazily, so a hung drive goes too) and wait for the mount process to end."""
        if os.path.ismount(self.path):
            subprocess.run(['fusermount3', '-u', '-z', str(self.path)], capture_output=True, timeout=60)
        for pid in self.pids:
            deadline = time.monotonic() + 30
            while _running(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()


def _running(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[-1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


@pytest.fixture
def drive(tmp_path):
    """A :class:`Drive`, always unmounted afterwards; a watchdog unmounts a hung one so the test fails."""
    made = Drive(tmp_path)
    watchdog = threading.Timer(WATCHDOG_SECONDS, lambda: subprocess.run(
        ['fusermount3', '-u', '-z', str(made.path)], capture_output=True, timeout=60))
    watchdog.daemon = True
    watchdog.start()
    try:
        yield made
    finally:
        watchdog.cancel()
        made.umount()


def test_a_non_empty_mountpoint_is_refused(drive, server, api):
    api('alice')
    (drive.path / 'mine.txt').write_text('hidden by a mount\n')
    result = drive.mount(server.host)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f'oaio: mountpoint is not empty (the drive would hide its files; '
                                          f'--allow-non-empty mounts anyway): {drive.path}']
    assert not os.path.ismount(drive.path)

    result = drive.mount(server.host, '--allow-non-empty')
    assert result.returncode == 0, result.stderr
    assert os.path.ismount(drive.path) and os.listdir(drive.path) == []
    drive.umount()
    assert (drive.path / 'mine.txt').read_text() == 'hidden by a mount\n'


@pytest.mark.parametrize('server_at, says', [
    (lambda: f'127.0.0.1:{free_port()}', 'connection refused'),
    (lambda: 'no-such-host.invalid', 'unknown host name no-such-host.invalid'),
])
@pytest.mark.parametrize('foreground', [False, True])
def test_a_first_mount_without_the_server_fails_in_one_line(drive, server_at, says, foreground):
    server = server_at()
    result = drive.mount(server, *(['--foreground'] if foreground else []))
    assert result.returncode == 3, result
    assert result.stderr.startswith(f'oaio: server {server} unreachable: {says}'), result.stderr
    assert result.stderr.count('\n') == 1 and result.stdout == ''
    assert not os.path.ismount(drive.path)


def test_a_cached_drive_mounts_offline_with_a_warning_and_status_says_why(drive, server, api):
    session = api('alice')
    assert drive.mount(server.host).returncode == 0
    (drive.path / 'kept').mkdir()
    (drive.path / 'kept/k.txt').write_text('in the cache\n')
    drive.umount()                          # uploads before the process ends
    assert [obj['client_values'].get('_name') for obj in session.get('oaio_stampz/').json()] == ['kept']

    down = f'127.0.0.1:{free_port()}'
    result = drive.mount(down)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f'oaio: warning: server {down} unreachable: connection refused at {down}; '
                                          'mounting the cached objects offline, changes sync when it is back']
    assert os.listdir(drive.path) == ['kept']
    assert (drive.path / 'kept/k.txt').read_text() == 'in the cache\n'

    status = oaio('status', '--json', str(drive.path))
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)[str(drive.path)]
    assert state['online'] is False and 'unreachable' in state['last_error']
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', state['last_sync']), state['last_sync']
    text = oaio('status', str(drive.path)).stdout
    assert f'{drive.path}: OFFLINE  alice at' in text and f'last sync {state["last_sync"]}' in text
    assert 'last sync incomplete: ' in text
