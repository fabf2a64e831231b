"""A first sync longer than the hand-over time: the drive mounts and shows each object as the sync
applies it, not only when the whole sync is over (before, it stayed empty until some unrelated
remote change arrived).

The hand-over time is ``$OAIO_FIRST_SYNC_SECONDS`` (30 s by default); 0 here, so the mount does not
wait at all. The server is stopped (SIGSTOP) while the mount downloads a large file, so the sync is
certainly still running while the test looks at the drive.
"""
from __future__ import annotations

import os
import signal

import pytest

from oaio.client import OaioClient

from oaio_testing import PASSWORD, file_digest, growing, sha, wait_for

MB = 1024 * 1024


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


@pytest.mark.timeout(300)
def test_a_long_first_sync_mounts_at_once_and_shows_each_object_as_it_arrives(server, api, mount, tmp_path,
                                                                              monkeypatch):
    api('alice')
    content = os.urandom(256 * MB)          # long enough a download to stop the server in the middle of it
                                            # (random: repeated blocks would be one chunk, fetched once)
    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests', device_id='other',
                    client_root=str(tmp_path / 'other')) as other:
        assert other.register_object({'_name': 'first', 'n': 1}) is not None      # earlier in the change feed
        assert other.register_file('big.bin', file_content=content) is not None
        assert other.error_message == ''

    monkeypatch.setenv('OAIO_FIRST_SYNC_SECONDS', '0')
    b = mount('alice', 'B')                 # returns once mounted: the first sync goes on behind it
    stopped = False
    try:
        # a big file is assembled in the store's partial/ folder (client/store.py partial_file)
        wait_for(growing(b.cache / 'partial', '*', 1), 60, 'the download of big.bin going on', interval=0.002)
        os.kill(server.process.pid, signal.SIGSTOP)
        stopped = True
        # the sync cannot end now (the server does not answer): what it applied is shown already
        wait_for(lambda: 'first' in listing(b.path), 15, 'the first object shown during the first sync')
        assert 'big.bin' not in listing(b.path)
        assert b.status()['last_sync'] is None          # no sync has completed yet
        assert (b / 'first/values.json').read_text() == '{\n  "_name": "first",\n  "n": 1\n}\n'
    finally:
        if stopped:
            os.kill(server.process.pid, signal.SIGCONT)
    # and the rest arrives with the rest of the sync, without any other change on the server
    wait_for(lambda: 'big.bin' in listing(b.path) and (b / 'big.bin/big.bin').stat().st_size == len(content),
             120, 'big.bin shown once downloaded')
    assert file_digest(b / 'big.bin/big.bin') == sha(content)
    state = wait_for(lambda: (lambda s: s if s['last_sync'] and s['pending'] == 0 else None)(b.status()), 60,
                     'the first sync complete')
    assert state['objects'] == 2 and state['online']
