"""contrib/mount.oaio: the fstab mount helper mounts with options as mount(8) passes them, as the
local user the options name (root at boot becomes that user), and refuses what it does not know."""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from oaio_testing import PASSWORD

HELPER = Path(__file__).resolve().parents[2] / 'contrib' / 'mount.oaio'


def helper(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HELPER), *args], capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL)


def as_user(name: str, *command: str) -> subprocess.CompletedProcess:
    """Run ``command`` as local user ``name`` (directly when that is who runs the tests)."""
    prefix = [] if pwd.getpwuid(os.geteuid()).pw_name == name else ['runuser', '-u', name, '--']
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=90, cwd='/',
                          stdin=subprocess.DEVNULL)


def mounted(path: Path) -> bool:
    """From /proc/mounts: root may not even stat another user's FUSE mount, so os.path.ismount says no."""
    with open('/proc/mounts') as table:
        return any(line.split()[1] == str(path) for line in table)


@pytest.fixture
def account():
    """The local user the drive is mounted for, with a folder of theirs outside root's private tmp_path:
    as root a new account (removed afterwards), else the user running the tests."""
    base = Path(tempfile.mkdtemp(prefix='oaio-helper-'))
    os.chmod(base, 0o755)
    created = None
    try:
        if os.geteuid() != 0:
            yield pwd.getpwuid(os.geteuid()), base
            return
        if not shutil.which('useradd'):
            pytest.skip('no useradd to create a second local user')
        created = f'oaio{uuid.uuid4().hex[:8]}'
        subprocess.run(['useradd', '--create-home', '--home-dir', str(base / 'home'), '--user-group',
                        '--shell', '/usr/sbin/nologin', created], check=True, capture_output=True)
        probe = as_user(created, sys.executable, '-c', 'import os, oaio.fs.cli, pyfuse3, trio; '
                        'assert os.access("/dev/fuse", os.R_OK | os.W_OK), "/dev/fuse is closed to other users"')
        if probe.returncode:
            pytest.skip(f'a second user cannot mount with {sys.executable}: {probe.stderr.strip().splitlines()[-1:]}')
        yield pwd.getpwnam(created), base
    finally:
        if created:
            subprocess.run(['userdel', '--remove', '--force', created], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_mount_helper_mounts_as_the_user_the_options_name(server, api, account):
    user, base = account
    name = user.pw_name
    api(name)
    mountpoint, password_file = base / 'mnt', base / 'password'
    mountpoint.mkdir()
    password_file.write_text(PASSWORD)
    os.chmod(password_file, 0o600)
    for path in (mountpoint, password_file):
        os.chown(path, user.pw_uid, user.pw_gid)
    # as mount(8) passes them for an fstab line with mount(8)'s own options among oaio's
    options = (f'rw,noauto,_netdev,nofail,users,nosuid,nodev,x-systemd.automount,user={name},'
               f'password_file={password_file},device=fstab')
    # watchdog: a hung FUSE call cannot be interrupted; a lazy unmount ends it and fails the test
    watchdog = threading.Timer(120, subprocess.run, [['fusermount3', '-u', '-z', str(mountpoint)]])
    watchdog.start()
    try:
        result = helper(server.host, str(mountpoint), '-o', options)
        assert result.returncode == 0, result.stderr
        assert mounted(mountpoint)
        write = as_user(name, sys.executable, '-c', 'import os, sys; os.mkdir(sys.argv[1] + "/from-fstab"); '
                        'open(sys.argv[1] + "/from-fstab/note.txt", "w").write("mounted by mount.oaio\\n"); '
                        'print(os.getxattr(sys.argv[1], "user.oaio.pid").decode())', str(mountpoint))
        assert write.returncode == 0, write.stderr
        with open(f'/proc/{int(write.stdout)}/status') as status:
            uids = next(line for line in status if line.startswith('Uid:')).split()[1:]
        assert uids == [str(user.pw_uid)] * 4                          # the mount runs as the user, for good
        cache = Path(user.pw_dir) / '.local' / 'state' / 'oaio'
        assert cache.is_dir() and cache.stat().st_uid == user.pw_uid     # their cache, in their home
        umount = as_user(name, sys.executable, '-m', 'oaio.fs.cli', 'umount', str(mountpoint))
        assert umount.returncode == 0, umount.stderr
        assert not mounted(mountpoint)
        listing = api(name).get('oaio_stampz/').json()
        assert [obj['client_values'].get('_name') for obj in listing] == ['from-fstab']
    finally:
        watchdog.cancel()
        if mounted(mountpoint):
            subprocess.run(['fusermount3', '-u', '-z', str(mountpoint)], check=False)


@pytest.mark.parametrize('options, says', [
    ('user=root,bogus', "unknown option 'bogus'"),
    ('user=root,ro', 'ro is not supported'),
    ('user=root,user=daemon', 'two values for user'),
    ('rw,noauto', 'usage: mount.oaio'),
    ('user=no-such-account-here', "no local user 'no-such-account-here'"),
])
def test_mount_helper_refuses_in_one_line(tmp_path, options, says):
    result = helper('localhost:1', str(tmp_path), '-o', options)
    assert result.returncode == 1 and result.stderr.count('\n') == 1 and says in result.stderr, result.stderr
    assert not mounted(tmp_path)


def test_mount_helper_ignores_unknown_options_when_sloppy_and_mounts_nothing_when_fake(tmp_path):
    result = helper('localhost:1', str(tmp_path), '-sf', '-o', f'user={pwd.getpwuid(os.geteuid()).pw_name},bogus')
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert not mounted(tmp_path)


def test_mount_helper_needs_a_server_and_a_mountpoint(tmp_path):
    result = subprocess.run([sys.executable, str(HELPER), 'only-one-argument'], capture_output=True, text=True)
    assert result.returncode != 0 and 'usage: mount.oaio' in result.stderr
