"""``oaio status`` and ``user.oaio.sync`` never say "synced" while it is not so: during an upload every
file not on the server yet counts as pending, "last sync" moves with every sync (also on a device
that only receives), and after a conflict only the conflicted files say ``conflict``.

An upload in progress is made certain by stopping the server (SIGSTOP) before the files are
written: the mount's sync then waits for an answer while the test looks.
"""
from __future__ import annotations

import json
import os
import signal
from datetime import datetime, timezone

import pytest

from oaio.client import OaioClient

from oaio_testing import PASSWORD, wait_for

OFFLINE_LOG = r'(?i)unreachable|not reachable|sync incomplete|connection|refused'


def sync_state(path) -> str:
    return os.getxattr(path, 'user.oaio.sync').decode()


def client_file_paths(m, name: str) -> list[str]:
    """The attached files of object ``name`` as the mount's client holds them (its store, objz/*.json)."""
    for record in (m.cache / 'objz').glob('*.json'):
        values = json.loads(record.read_text())['object']['client_values']
        if values.get('_name') == name:
            return values.get('_file_paths', [])
    return []


def settled(m):
    state = m.status()
    return state if state['pending'] == 0 and state['last_sync'] and not state['last_error'] else None


@pytest.mark.timeout(300)
def test_pending_counts_every_file_not_on_the_server_during_an_upload(server, mount):
    a = mount('alice', 'A')
    (a / 'bulk').mkdir()
    (a / 'bulk/old.txt').write_bytes(b'synced before\n')
    a.remote.wait_files('bulk', {'old.txt': b'synced before\n'})
    wait_for(lambda: settled(a), 30, 'A settled')
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        names = [f'new-{i:03}.txt' for i in range(60)]
        for name in names:
            (a / 'bulk' / name).write_bytes(name.encode())
        state = a.status()                  # noted by the mount (handed to its client or not yet)
        assert state['pending'] == len(names) and state['pending_objects'] == 1, state
        # handed over (all, or a first batch): the client holds a new version, its sync waits for the server
        wait_for(lambda: len(client_file_paths(a, 'bulk')) > 1, 30, 'the client took the files')
        state = a.status()
        assert state['pending'] == len(names) and state['pending_objects'] == 1, state
        assert sync_state(a / 'bulk') == 'pending'
        assert sync_state(a / 'bulk/new-000.txt') == 'pending'
        assert sync_state(a / 'bulk/old.txt') == 'synced'            # unchanged: on the server
        assert sync_state(a / 'bulk/values.json') == 'synced'
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    a.remote.wait_object('bulk', lambda obj: len(obj['client_values']['_file_paths']) == len(names) + 1,
                         what='every file uploaded')
    wait_for(lambda: settled(a), 60, 'A settled after the upload')
    assert sync_state(a / 'bulk') == sync_state(a / 'bulk/new-059.txt') == 'synced'


@pytest.mark.timeout(300)
def test_last_sync_moves_on_a_device_that_only_receives(mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    first = wait_for(lambda: settled(b), 30, 'B settled')['last_sync']
    # ISO 8601 to the second: let the clock pass the first sync's second, then change something on A
    wait_for(lambda: datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ') > first, 5, 'a second passed')
    (a / 'news').mkdir()
    wait_for(lambda: (b / 'news').exists(), 30, 'the new object on B')
    assert b.status()['last_sync'] > first         # B has synced (the news) without uploading anything


@pytest.mark.timeout(300)
def test_after_a_conflict_only_the_conflicted_files_say_conflict(server, api, mount, tmp_path):
    a = mount('alice', 'A')
    a.expect_log(OFFLINE_LOG)
    (a / 'doc').mkdir()
    (a / 'doc/c.txt').write_bytes(b'base\n')
    (a / 'doc/other.txt').write_bytes(b'untouched\n')
    obj = a.remote.wait_files('doc', {'c.txt': b'base\n', 'other.txt': b'untouched\n'})
    wait_for(lambda: settled(a), 30, 'A settled')

    server.stop()
    (a / 'doc/c.txt').write_bytes(b'changed on A\n')        # offline: kept for the next mount
    a.stop()
    server.start()
    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests', device_id='L',
                    client_root=str(tmp_path / 'other')) as other:
        assert other.synchronize_with_server_if_online(), other.error_message
        (other.files_root(obj['oaio_id']) / 'c.txt').write_bytes(b'changed on L\n')
        assert other.note_changed(obj['oaio_id'], 'c.txt')        # and synced (auto_sync)
        assert other.error_message == ''
    a.start()                       # merges L's version with its own: a conflict copy of c.txt
    copies = wait_for(lambda: [name for name in os.listdir(a / 'doc') if '.conflict-' in name], 30,
                      'the conflict copy on A')
    wait_for(lambda: settled(a), 60, 'A settled after the merge')
    assert len(copies) == 1 and copies[0].startswith('c.conflict-A-') and copies[0].endswith('.txt')
    assert (a / 'doc/c.txt').read_bytes() == b'changed on L\n'
    assert (a / 'doc' / copies[0]).read_bytes() == b'changed on A\n'
    assert sync_state(a / 'doc/c.txt') == 'conflict'
    assert sync_state(a / 'doc' / copies[0]) == 'conflict'
    assert sync_state(a / 'doc/other.txt') == 'synced'
    assert sync_state(a / 'doc/values.json') == 'synced'
    assert sync_state(a / 'doc') == 'conflict'                 # the object's folder: the whole object
    assert a.status()['conflicts'] == 1
    (a / 'doc' / copies[0]).unlink()                            # resolved
    wait_for(lambda: sync_state(a / 'doc/c.txt') == 'synced' and sync_state(a / 'doc') == 'synced', 30,
             'the conflict resolved')
