"""A client killed at any instant (SIGKILL of a subprocess) leaves a consistent store, and the next
client on the same ``client_root`` resumes: the lock is free, pending uploads go up completely."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from oaio.client import OaioClient
from oaio.client.chunking import hash_file
from oaio.client.errors import StoreLockedError
from oaio.client.store import LocalStore

from oaio_testing import PASSWORD, file_digest, wait_for

CHUNK = 1024 * 1024


def stored_bytes(folder: Path) -> int:
    """The bytes of the files under ``folder`` (a server's blob storage) now."""
    total = 0
    for path in folder.rglob('*'):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            pass
    return total

UPLOADER = textwrap.dedent('''
    import hashlib, os, sys
    from oaio.client import OaioClient
    from oaio.client.model import object_id
    from oaio.client.protocol import now_stamp

    host, root, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    credentials = {'username': 'alice', 'password': os.environ['OAIO_PASSWORD']}
    with OaioClient(host, credentials, app_id='tests', device_id='crashy', client_root=root,
                    auto_sync=False) as client:
        stamp = now_stamp()
        oaio_id = object_id('alice', 'crashy', 'tests', stamp, {'_file_paths': ['big.bin']})
        path = os.path.join(root, 'filez', oaio_id, 'big.bin')
        os.makedirs(os.path.dirname(path))
        block = hashlib.sha256(b'crash').digest() * (1024 * 1024 // 32)
        with open(path, 'wb') as file:                  # written in chunks, never whole in memory
            for index in range(0, size, len(block)):
                file.write((index.to_bytes(8, 'big') + block)[:min(len(block), size - index)])
        registered = client.register_file('big.bin', stamp=stamp)
        print('registered', registered.oaio_id, flush=True)
        print('synced', client.synchronize_with_server_if_online(), client.error_message, flush=True)
''')

RECORD_WRITER = textwrap.dedent('''
    import hashlib, json, sys
    from oaio.client.model import OaiObject
    from oaio.client.store import LocalStore, ObjectRecord

    store = LocalStore(sys.argv[1])
    start = int(sys.argv[2])
    for round in range(start, start + 10 ** 9):
        for n in range(8):
            pad = 'x' * (997 * ((round * 7 + n) % 61))      # the size changes with every write
            values = {'round': round, 'n': n, 'pad': pad}
            values['check'] = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
            store.save_record(ObjectRecord(obj=OaiObject(f'object-{n}', client_stamp=f'2026{round:016d}',
                                                         client_values=values)))
            store.save_state({'cursor': str(round), 'pending_deletes': [f'gone-{round}-{n}'] * (n + 1)})
        store.last_sync_stamp = f'2026{round:016d}'
        print(round, flush=True)
''')


def test_client_killed_mid_upload_resumes_with_a_consistent_store(server, api, tmp_path):
    session = api('alice')
    root = tmp_path / 'crashy-root'
    size = 300 * CHUNK
    env = dict(os.environ, OAIO_PASSWORD=PASSWORD)
    process = subprocess.Popen([sys.executable, '-c', UPLOADER, server.host, str(root), str(size)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith('registered '), line + process.stderr.read()
        oaio_id = line.split(' ', 1)[1].strip()
        big = root / 'filez' / oaio_id / 'big.bin'
        digest = file_digest(big)
        with pytest.raises(StoreLockedError):           # the running client holds client_root
            OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, device_id='other',
                       client_root=str(root), auto_sync=False)
        wait_for(lambda: stored_bytes(server.data / 'blobs') >= 32 * CHUNK, 120,
                 'the first packs of chunks to be stored on the server', interval=0.005)
        assert process.poll() is None, 'the client finished before it could be killed'
        process.kill()
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()

    # the server has no object (the version never completed)
    assert session.get('oaio_stampz/').json() == []
    # but it keeps the chunks that arrived, as alice's: the next upload sends only the others
    _, _, chunks = hash_file(big)
    hashes = [digest for digest, _ in chunks]
    missing = session.post('blobs/missing/', json={'sha256': hashes}).json()['missing']
    assert 0 < len(hashes) - len(missing) < len(hashes), (len(hashes), len(missing))

    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests', device_id='crashy',
                    client_root=str(root), auto_sync=False) as client:         # the lock died with the process
        assert list(client.client_objectz) == [oaio_id]
        obj = client.client_objectz[oaio_id]
        assert obj.pending and obj.file_paths == ['big.bin'] and not obj.server_stamp
        assert not list((root / 'objz').glob('*.unreadable'))
        assert file_digest(big) == digest
        assert client.synchronize_with_server_if_online(), client.error_message
        obj = client.client_objectz[oaio_id]
        assert not obj.pending and obj.server_stamp == obj.client_stamp

    listing = session.get('oaio_stampz/').json()
    assert [(entry['oaio_id'], entry['client_stamp']) for entry in listing] == [(oaio_id, obj.client_stamp)]
    got = hashlib.sha256()
    with session.get(f'files/{quote(oaio_id, safe="")}/{obj.client_stamp}/big.bin', stream=True) as answer:
        assert answer.status_code == 200, answer.text
        for chunk in answer.iter_content(CHUNK):
            got.update(chunk)
    assert got.hexdigest() == digest
    big.unlink()


def _check_records(root: Path) -> int:
    """Open the store as the next client would and check every record; return the newest round."""
    store = LocalStore(root)
    try:
        records = store.load_records()
        assert not list((root / 'objz').glob('*.unreadable')), 'a record was torn by the crash'
        assert sorted(records) == [f'object-{n}' for n in range(8)]
        for oaio_id, record in records.items():
            values = dict(record.obj.client_values)
            check = values.pop('check')
            assert hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest() == check, oaio_id
            assert record.obj.client_stamp == f'2026{values["round"]:016d}'
        state = store.load_state()
        assert not (root / 'state.json.unreadable').exists() and not (root / 'state.unreadable').exists()
        assert state['cursor'].isdigit() and len(state['pending_deletes']) in range(1, 9)
        assert store.last_sync_stamp == '' or len(store.last_sync_stamp) == 20
        return max(record.obj.client_values['round'] for record in records.values())
    finally:
        store.close()


@pytest.mark.parametrize('kill_after_rounds', [1, 3, 10])
def test_kill_during_atomic_writes_leaves_old_or_new_records(tmp_path, kill_after_rounds):
    root = tmp_path / 'store'
    start = 0
    for attempt in range(4):
        process = subprocess.Popen([sys.executable, '-c', RECORD_WRITER, str(root), str(start)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(kill_after_rounds + attempt):
                line = process.stdout.readline()
                assert line.strip().isdigit(), line + process.stderr.read()
            process.send_signal(signal.SIGKILL)        # somewhere in the middle of the next round
            assert process.wait(30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()
        newest = _check_records(root)
        assert newest >= start + kill_after_rounds + attempt - 1
        start = newest + 1
    # temp files of interrupted writes do not pile up: the next start removes them
    LocalStore(root).close()
    leftovers = [path.name for folder in (root, root / 'objz') for path in folder.glob('.tmp-*')]
    assert not leftovers
