"""A ``Type=notify`` unit (contrib/systemd/oaio-mount@.service) is started once the drive is mounted:
the mount sends READY=1 to $NOTIFY_SOCKET then, and not before."""
import os
import socket
import threading

import pytest

READY_SECONDS = 60             # the mount syncs once (at most 30 s) before it reports ready


@pytest.mark.parametrize('kind', ['path', 'abstract'])
def test_ready_once_mounted(mount, tmp_path, monkeypatch, kind):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == 'path':
        address = str(tmp_path / 'notify')
        receiver.bind(address)
    else:
        address = f'@oaio-test-{os.getpid()}-{id(receiver)}'
        receiver.bind('\0' + address[1:])
    receiver.settimeout(READY_SECONDS)
    mountpoint = tmp_path / 'mount-0-alice-dev1' / 'mnt'            # where the fixture's first mount goes
    received = []

    def receive():
        try:
            received.append((receiver.recv(256), os.path.ismount(mountpoint)))
        except TimeoutError:
            received.append((b'', False))
    listener = threading.Thread(target=receive)
    listener.start()
    monkeypatch.setenv('NOTIFY_SOCKET', address)
    try:
        drive = mount('alice')
        listener.join()
    finally:
        receiver.close()
    assert drive.path == mountpoint
    assert received == [(b'READY=1', True)]
