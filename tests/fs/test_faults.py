"""Faults around real mounts: kill -9 and remount, umount and SIGTERM with pending changes, mounting
offline, and the one-line errors of ``oaio mount`` (wrong password, missing or busy mountpoint)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oaio_testing import wait_for


def oaio(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'oaio.fs.cli', *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def mount_args(m, mountpoint: Path | None = None, password_file: Path | None = None) -> list[str]:
    """``oaio mount`` arguments (no --foreground) for the user, device and cache of the fixture mount ``m``."""
    return ['mount', m.server.host, str(mountpoint or m.path), '--user', m.user,
            '--password-file', str(password_file or m.password_file), '--cache', str(m.cache), '--device', m.device]


def write_values(path, values: dict) -> None:
    with open(path, 'w') as file:
        json.dump(values, file)


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{task}/children') as listing:
            found += [int(child) for child in listing.read().split()]
    return found


def kill9(m, with_auto_unmount_helper: bool = False) -> None:
    """kill -9 the fixture mount's process (and first its fusermount3 auto_unmount helper: then
    nobody unmounts, and a dead mountpoint stays behind)."""
    process = m.process
    if with_auto_unmount_helper:
        for child in children(process.pid):
            os.kill(child, signal.SIGKILL)
    process.kill()
    process.wait(timeout=30)
    m.process = None            # killed on purpose: no exit code to check


def in_mount_table(path) -> bool:
    with open('/proc/mounts') as table:
        return any(line.split()[1] == str(path) for line in table)


def answers(path) -> bool:
    try:
        return bool(os.getxattr(path, 'user.oaio.pid'))
    except OSError:
        return False


def reap(m, timeout: float = 60) -> int:
    """Wait for the fixture mount's process to end by itself; its exit code."""
    process, m.process = m.process, None
    code = process.wait(timeout=timeout)
    m.exit_codes.append(code)
    return code


class Daemon:
    """A mount started by ``oaio mount`` without --foreground: found by its pid, always ended."""

    def __init__(self, path: Path):
        self.path, self.pid = path, int(os.getxattr(path, 'user.oaio.pid'))

    def alive(self) -> bool:
        try:
            with open(f'/proc/{self.pid}/stat') as stat:
                return stat.read().split(') ')[-1][0] != 'Z'
        except FileNotFoundError:
            return False

    def end(self) -> None:
        subprocess.run(['fusermount3', '-u', '-z', str(self.path)], capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.end()


# kill -9 -------------------------------------------------------------------------------------

@pytest.mark.parametrize('dead_mountpoint', [False, True], ids=['auto-unmounted', 'dead-mountpoint'])
def test_kill9_then_remount_loses_nothing_that_was_closed(mount, dead_mountpoint):
    m = mount('alice', 'A')
    (m / 'diary').mkdir()
    (m / 'diary/day1.txt').write_bytes(b'synced before the kill\n')
    m.remote.wait_files('diary', {'day1.txt': b'synced before the kill\n'})

    # changes closed a moment before the kill: the debounce has not handed them over yet
    (m / 'diary/day2.txt').write_bytes(b'written just before the kill\n')
    with open(m / 'diary/day1.txt', 'ab') as file:
        file.write(b'appended just before the kill\n')
    write_values(m / 'diary/values.json', {'_name': 'diary', 'mood': 'killed'})
    kill9(m, with_auto_unmount_helper=dead_mountpoint)

    if dead_mountpoint:
        assert in_mount_table(m.path)
        with pytest.raises(OSError):
            os.listdir(m.path)            # ENOTCONN: nobody serves it any more
    m.start()                             # the same mountpoint and cache
    # (a dead mount may look mounted to start(): wait until the new process answers)
    wait_for(lambda: answers(m.path), what='the new mount answering')
    assert os.listdir(m.path) == ['diary']
    assert (m / 'diary/day2.txt').read_bytes() == b'written just before the kill\n'
    expected = {'day1.txt': b'synced before the kill\nappended just before the kill\n',
                'day2.txt': b'written just before the kill\n'}
    assert (m / 'diary/day1.txt').read_bytes() == expected['day1.txt']
    m.remote.wait_files('diary', expected)
    m.remote.wait_object('diary', lambda obj: obj['client_values'].get('mood') == 'killed',
                         what='values.json closed before the kill, on the server')
    assert json.loads((m / 'diary/values.json').read_text()) == {'_name': 'diary', 'mood': 'killed'}


def test_kill9_right_after_new_objects_renames_and_removals(mount):
    m = mount('alice', 'A')
    (m / 'old').mkdir()
    (m / 'to-rename').mkdir()
    m.remote.wait_object('old')
    m.remote.wait_object('to-rename')
    wait_for(lambda: os.getxattr(m / 'to-rename', 'user.oaio.sync') == b'synced', what='synced')

    (m / 'fresh').mkdir()
    (m / 'fresh/f.txt').write_bytes(b'in a new object\n')
    write_values(m / 'fresh/values.json', {'_name': 'fresh', 'n': 1})
    os.rename(m / 'to-rename', m / 'renamed')
    os.rmdir(m / 'old')
    kill9(m)

    m.start()
    wait_for(lambda: answers(m.path), what='the new mount answering')
    assert sorted(os.listdir(m.path)) == ['fresh', 'renamed']
    obj = m.remote.wait_files('fresh', {'f.txt': b'in a new object\n'})
    assert obj['client_values']['n'] == 1
    m.remote.wait_object('renamed')
    m.remote.wait_gone('old')
    m.remote.wait_gone('to-rename')
    assert sorted(os.listdir(m.path)) == ['fresh', 'renamed']


def test_background_oaio_mount_cleans_up_a_dead_mountpoint(mount, daemons):
    m = mount('alice', 'A')
    (m / 'box').mkdir()
    (m / 'box/in.txt').write_bytes(b'inside\n')
    m.remote.wait_files('box', {'in.txt': b'inside\n'})
    kill9(m, with_auto_unmount_helper=True)
    assert in_mount_table(m.path)

    result = oaio(*mount_args(m))
    if os.path.ismount(m.path):
        daemons.append(Daemon(m.path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    assert (m / 'box/in.txt').read_bytes() == b'inside\n'
    with open('/proc/mounts') as table:
        assert sum(line.split()[1] == str(m.path) for line in table) == 1

    # and `oaio umount` ends it
    daemon = daemons[0]
    result = oaio('umount', str(m.path))
    assert result.returncode == 0, result.stderr
    assert not os.path.ismount(m.path)
    assert not daemon.alive()


# umount and signals ---------------------------------------------------------------------------

def test_oaio_umount_uploads_pending_changes(mount):
    m = mount('alice', 'A')
    (m / 'memo').mkdir()
    (m / 'memo/m.txt').write_bytes(b'closed right before umount\n')
    write_values(m / 'memo/values.json', {'_name': 'memo', 'state': 'draft'})
    result = oaio('umount', str(m.path))
    assert result.returncode == 0, result.stderr
    assert reap(m) == 0
    assert not os.path.ismount(m.path)
    obj = m.remote.wait_files('memo', {'m.txt': b'closed right before umount\n'})
    assert obj['client_values']['state'] == 'draft'


def test_oaio_umount_offline_keeps_pending_changes_for_the_next_mount(mount, server):
    m = mount('alice', 'A')
    m.expect_log(r'unreachable|not reachable|sync incomplete')
    (m / 'memo').mkdir()
    (m / 'memo/m.txt').write_bytes(b'v1\n')
    m.remote.wait_files('memo', {'m.txt': b'v1\n'})
    server.stop()
    (m / 'memo/m.txt').write_bytes(b'v2, written offline\n')
    (m / 'memo/new.txt').write_bytes(b'new, offline\n')
    write_values(m / 'memo/values.json', {'_name': 'memo', 'state': 'offline edit'})
    started = time.monotonic()
    result = oaio('umount', str(m.path))
    assert result.returncode == 0, result.stderr
    assert reap(m) == 0
    assert time.monotonic() - started < 30
    assert not os.path.ismount(m.path)

    server.start()
    m.start()
    obj = m.remote.wait_files('memo', {'m.txt': b'v2, written offline\n', 'new.txt': b'new, offline\n'})
    assert obj['client_values']['state'] == 'offline edit'


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_unmounts_a_foreground_mount_cleanly(mount, signum):
    m = mount('alice', 'A')
    (m / 'sig').mkdir()
    (m / 'sig/s.txt').write_bytes(b'before the signal\n')
    m.process.send_signal(signum)
    assert reap(m) == 0
    assert not os.path.ismount(m.path)
    assert not in_mount_table(m.path)
    assert os.listdir(m.path) == []
    m.remote.wait_files('sig', {'s.txt': b'before the signal\n'})


# mounting -------------------------------------------------------------------------------------

def test_mounting_with_the_server_down_shows_the_cached_objects(mount, server):
    m = mount('alice', 'A')
    m.expect_log(r'unreachable|not reachable|sync incomplete')
    (m / 'cached').mkdir()
    (m / 'cached/c.txt').write_bytes(b'in the cache\n')
    write_values(m / 'cached/values.json', {'_name': 'cached', 'k': 1})
    m.remote.wait_files('cached', {'c.txt': b'in the cache\n'})
    m.stop()
    server.stop()

    started = time.monotonic()
    m.start()
    assert time.monotonic() - started < 30
    assert os.listdir(m.path) == ['cached']
    assert (m / 'cached/c.txt').read_bytes() == b'in the cache\n'
    assert json.loads((m / 'cached/values.json').read_text()) == {'_name': 'cached', 'k': 1}
    assert m.status()['online'] is False
    # edits queue while offline and go up when the server is back
    (m / 'cached/offline.txt').write_bytes(b'queued\n')
    wait_for(lambda: m.status()['pending'] > 0, what='the offline edit pending')
    server.start()
    m.remote.wait_files('cached', {'c.txt': b'in the cache\n', 'offline.txt': b'queued\n'})
    wait_for(lambda: m.status()['online'] and m.status()['pending'] == 0, what='online and synced')


def test_background_mount_with_the_server_down_on_a_fresh_cache_fails(mount, server, tmp_path, daemons):
    """Nothing cached to show: a first mount needs the server, and says so (exit 3) instead of an empty drive."""
    m = mount('alice', 'A')         # for its server, user and password file
    m.stop()
    server.stop()
    mountpoint, cache = tmp_path / 'fresh-mnt', tmp_path / 'fresh-cache'
    mountpoint.mkdir()
    result = oaio('mount', m.server.host, str(mountpoint), '--user', 'alice', '--password-file', str(m.password_file),
                  '--cache', str(cache), '--device', 'F')
    if os.path.ismount(mountpoint):
        daemons.append(Daemon(mountpoint))
    assert result.returncode == 3, result.stderr
    assert result.stderr.count('\n') == 1 and 'unreachable' in result.stderr, result.stderr
    assert not os.path.ismount(mountpoint)


def test_wrong_password_is_a_one_line_error(mount, api, tmp_path):
    api('alice')
    wrong = tmp_path / 'wrong-password'
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'not the password\n')
    os.close(fd)
    mountpoint = tmp_path / 'mnt-wrong'
    mountpoint.mkdir()
    m = mount('alice', 'A')         # for its server and paths; its own mount stays untouched
    result = oaio('mount', m.server.host, str(mountpoint), '--user', 'alice', '--password-file', str(wrong),
                  '--cache', str(tmp_path / 'cache-wrong'), '--device', 'W')
    assert result.returncode == 4
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert 'password' in result.stderr and 'Traceback' not in result.stderr
    assert not os.path.ismount(mountpoint)
    result = oaio('mount', m.server.host, str(mountpoint), '--user', 'alice', '--password-file', str(wrong),
                  '--cache', str(tmp_path / 'cache-wrong'), '--device', 'W', '--foreground')
    assert result.returncode == 4
    assert 'password' in result.stderr
    assert not os.path.ismount(mountpoint)


def test_missing_and_busy_mountpoints_are_one_line_errors(mount, tmp_path):
    m = mount('alice', 'A')
    other_cache = tmp_path / 'other-cache'
    for target, words in ((tmp_path / 'does-not-exist', 'does not exist'), (m.path, 'busy')):
        for extra in ([], ['--foreground']):
            result = oaio('mount', m.server.host, str(target), '--user', 'alice', '--password-file',
                          str(m.password_file), '--cache', str(other_cache), '--device', 'X', *extra)
            assert result.returncode == 1, result
            assert result.stderr.count('\n') == 1 and words in result.stderr, result.stderr
    # a file is no mountpoint either
    plain = tmp_path / 'plain-file'
    plain.write_text('x')
    result = oaio('mount', m.server.host, str(plain), '--user', 'alice', '--password-file', str(m.password_file),
                  '--cache', str(other_cache))
    assert result.returncode == 1 and result.stderr.count('\n') == 1, result.stderr
    # the mount that was there is untouched
    assert os.path.ismount(m.path)
    (m / 'still').mkdir()
    m.remote.wait_object('still')


def test_a_cache_in_use_by_another_mount_is_a_one_line_error(mount, tmp_path):
    m = mount('alice', 'A')
    second = tmp_path / 'second-mountpoint'
    second.mkdir()
    result = oaio(*mount_args(m, mountpoint=second))
    assert result.returncode == 6, result
    assert result.stderr.count('\n') == 1, result.stderr
    assert not os.path.ismount(second)
    assert os.path.ismount(m.path)
