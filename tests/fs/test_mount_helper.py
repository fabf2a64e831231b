"""contrib/mount.oaio: the fstab mount helper mounts with options as mount(8) passes them."""
import os
import subprocess
import sys
import threading
from pathlib import Path

from oaio_testing import PASSWORD

HELPER = Path(__file__).resolve().parents[2] / 'contrib' / 'mount.oaio'


def test_mount_helper_mounts_with_fstab_options(server, api, tmp_path):
    api('alice')
    mountpoint, cache, password_file = tmp_path / 'mnt', tmp_path / 'cache', tmp_path / 'password'
    mountpoint.mkdir()
    password_file.write_text(PASSWORD)
    os.chmod(password_file, 0o600)
    options = f'rw,noauto,_netdev,user=alice,password_file={password_file},cache={cache},device=fstab'
    # watchdog: a hung FUSE call cannot be interrupted; a lazy unmount ends it and fails the test
    watchdog = threading.Timer(120, subprocess.run, [['fusermount3', '-u', '-z', str(mountpoint)]])
    watchdog.start()
    try:
        result = subprocess.run([sys.executable, str(HELPER), server.host, str(mountpoint), '-o', options],
                                capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mountpoint)
        (mountpoint / 'from-fstab').mkdir()
        (mountpoint / 'from-fstab' / 'note.txt').write_text('mounted by mount.oaio\n')
        umount = subprocess.run([sys.executable, '-m', 'oaio.fs.cli', 'umount', str(mountpoint)],
                                capture_output=True, text=True, timeout=90)
        assert umount.returncode == 0, umount.stderr
        assert not os.path.ismount(mountpoint)
        listing = api('alice').get('oaio_stampz/').json()
        assert [obj['client_values'].get('_name') for obj in listing] == ['from-fstab']
    finally:
        watchdog.cancel()
        if os.path.ismount(mountpoint):
            subprocess.run(['fusermount3', '-u', '-z', str(mountpoint)], check=False)


def test_mount_helper_needs_a_server_and_a_mountpoint(tmp_path):
    result = subprocess.run([sys.executable, str(HELPER), 'only-one-argument'], capture_output=True, text=True)
    assert result.returncode != 0 and 'usage: mount.oaio' in result.stderr
