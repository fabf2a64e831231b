"""Stopping and starting the server on the same data directory keeps everything: users, sessions,
objects, versions, files, subscriptions and change-feed cursors. SIGTERM stops it cleanly (exit 0,
promptly, even with a long poll waiting); after SIGKILL it starts again with every acknowledged write."""
from __future__ import annotations

import itertools
import signal
import stat
import subprocess
import threading
import time

import requests

from oaio_testing import sha

_stamps = itertools.count(1)


def new_stamp() -> str:
    return f'2026112513{next(_stamps):010d}'


def ok(answer: requests.Response, status: int = 200) -> requests.Response:
    assert answer.status_code == status, answer.text
    return answer


def stop(server, sig: int = signal.SIGTERM, within: float = 20) -> tuple[int, float]:
    """Send ``sig`` to the server; return its exit code and how long it took to exit."""
    process = server.process
    started = time.monotonic()
    process.send_signal(sig)
    try:
        code = process.wait(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f'the server did not exit within {within} s after signal {sig}') from None
    finally:
        server.process = None
    return code, time.monotonic() - started


def state(alice, bob, stamps: dict) -> dict:
    """Everything the two users can see of the server, for comparison across a restart."""
    seen = {}
    for session in (alice, bob):
        name = session.username
        seen[name, 'listing'] = sorted(ok(session.get('oaio_stampz/')).json(), key=lambda o: o['oaio_id'])
        snapshot = ok(session.get('changes/')).json()
        seen[name, 'snapshot'] = (snapshot['cursor'], sorted(snapshot['changes'], key=lambda e: e['oaio']['oaio_id']))
        seen[name, 'since 0'] = ok(session.get('changes/', params={'since': '0'})).json()
        seen[name, 'subz'] = ok(session.get('user_subz/doc')).json()
    for stamp in (stamps['doc1'], stamps['doc2']):
        for path in ('a.txt', 'dir/b.bin'):
            got = ok(alice.get(f'files/doc/{stamp}/{path}'))
            seen['file', stamp, path] = (got.content, got.headers['X-OAIO-SHA256'], got.headers['Content-Length'])
    seen['bob reads'] = ok(bob.get(f'files/doc/{stamps["doc2"]}/a.txt')).content
    seen['missing'] = ok(alice.post('blobs/missing/', json={'sha256': [sha(b'A1'), sha(b'A2'), sha(b'B'),
                                                                       sha(b'never')]})).json()
    return seen


def test_restart_keeps_everything(server, api):
    alice, bob = api('alice'), api('bob')
    stamps = {'doc1': new_stamp(), 'doc2': new_stamp(), 'notes': new_stamp(), 'bobs': new_stamp()}
    ok(alice.request('put', f'files/doc/{stamps["doc1"]}/a.txt', data=b'A1'), 201)
    ok(alice.request('put', f'files/doc/{stamps["doc1"]}/dir/b.bin', data=b'B'), 201)
    ok(alice.post('register/', json={'oaio_id': 'doc', 'client_stamp': stamps['doc1'],
                                     'client_values': {'_file_paths': ['a.txt', 'dir/b.bin'], 'v': 1}}))
    ok(alice.request('put', f'files/doc/{stamps["doc2"]}/a.txt', data=b'A2'), 201)
    ok(alice.post('upload/', json={'oaio_id': 'doc', 'client_stamp': stamps['doc2'], 'server_stamp': stamps['doc1'],
                                   'client_values': {'_file_paths': ['a.txt', 'dir/b.bin'], 'v': 2},
                                   'files': {'dir/b.bin': sha(b'B')}}))
    ok(alice.post('subscribe/', json={'oaio_id': 'doc', 'username': 'bob', 'access_right': 'U'}))
    ok(alice.post('register/', json={'oaio_id': 'notes', 'client_stamp': stamps['notes'],
                                     'client_values': {'_name': 'Notes ✓'}}))
    ok(bob.post('register/', json={'oaio_id': 'bobs', 'client_stamp': stamps['bobs'], 'client_values': {}}))
    staged = new_stamp()
    ok(alice.request('put', f'files/draft/{staged}/d.txt', data=b'staged before the restart'), 201)
    alice_cursor = ok(alice.get('changes/')).json()['cursor']
    before = state(alice, bob, stamps)
    blobs_before = sorted(path.name for path in (server.data / 'blobs').rglob('*') if path.is_file())
    key_before = (server.data / 'secret_key').read_text()

    code, took = stop(server)
    assert code == 0, server.log()
    server.start()

    # the sessions of before still work (sessions and the secret key are kept)
    assert state(alice, bob, stamps) == before
    assert (server.data / 'secret_key').read_text() == key_before
    assert sorted(path.name for path in (server.data / 'blobs').rglob('*') if path.is_file()) == blobs_before
    # passwords too
    fresh = api('bob', device='fresh')     # logs in with the password
    assert fresh.get('oaio_stampz/').status_code == 200

    # the feed continues from a cursor of before, with new cursors after the old ones
    assert ok(alice.get('changes/', params={'since': alice_cursor})).json()['changes'] == []
    doc3 = new_stamp()
    ok(bob.post('upload/', json={'oaio_id': 'doc', 'client_stamp': doc3, 'server_stamp': stamps['doc2'],
                                 'client_values': {'_file_paths': ['a.txt'], 'v': 3}, 'files': {'a.txt': sha(b'A2')}}))
    answer = ok(alice.get('changes/', params={'since': alice_cursor})).json()
    assert int(answer['cursor']) > int(alice_cursor)
    assert [(e['oaio']['oaio_id'], e['oaio']['client_stamp'], e['oaio']['username']) for e in answer['changes']] == [
        ('doc', doc3, 'bob')]
    # the head rule still holds against the stored head, and ids stay taken
    stale = alice.post('upload/', json={'oaio_id': 'doc', 'client_stamp': new_stamp(), 'server_stamp': stamps['doc2'],
                                        'client_values': {}})
    assert stale.status_code == 409 and stale.json()['head']['client_stamp'] == doc3
    assert alice.post('register/', json={'oaio_id': 'notes', 'client_stamp': new_stamp(),
                                         'client_values': {}}).status_code == 409
    # a file staged before the restart can be registered after it
    ok(alice.post('register/', json={'oaio_id': 'draft', 'client_stamp': staged,
                                     'client_values': {'_file_paths': ['d.txt']}}))
    assert ok(alice.get(f'files/draft/{staged}/d.txt')).content == b'staged before the restart'


def test_sigterm_with_a_waiting_long_poll(server, api):
    alice = api('alice')
    cursor = ok(alice.get('changes/')).json()['cursor']
    result: dict = {}

    def wait() -> None:
        try:
            result['answer'] = alice.session.get(alice.server.url + 'changes/',
                                                 params={'since': cursor, 'wait': '60'}, timeout=90)
        except requests.RequestException as exc:
            result['error'] = exc
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    # the long poll is being served once two later feed requests of the same user are answered
    probe = api('alice', device='probe')
    for _ in range(2):
        assert ok(probe.get('changes/', params={'since': cursor, 'wait': '0'})).json()['changes'] == []
    assert thread.is_alive()

    code, took = stop(server)
    print(f'\nSIGTERM with a waiting long poll: exit code {code} after {took:.2f} s')
    assert code == 0, server.log()
    assert took < 10, server.log()
    thread.join(timeout=30)
    assert not thread.is_alive()
    # the waiting client got an answer (nothing changed), not a dropped connection
    assert 'error' not in result, result
    assert result['answer'].status_code == 200
    assert result['answer'].json() == {'cursor': cursor, 'snapshot': False, 'more': False, 'changes': []}
    assert 'Traceback' not in server.log()

    server.start()
    assert ok(alice.get('changes/', params={'since': cursor})).json()['changes'] == []


def test_sigterm_when_idle_exits_0(server, api):
    api('alice')
    code, took = stop(server)
    assert code == 0, server.log()
    assert took < 10
    server.start()
    assert ok(api('alice', device='after').get('oaio_stampz/')).json() == []


def test_sigkill_keeps_every_acknowledged_write(server, api):
    alice = api('alice')
    first = new_stamp()
    ok(alice.post('register/', json={'oaio_id': 'busy', 'client_stamp': first, 'client_values': {'n': 0}}))
    writer = api('alice', device='writer')
    acknowledged = [first]
    in_flight: list = []
    stop_writing = threading.Event()

    def write() -> None:
        n = 0
        while not stop_writing.is_set():
            n += 1
            stamp = new_stamp()
            in_flight.append(stamp)
            content = f'content {n}'.encode()
            try:
                put = writer.request('put', f'files/busy/{stamp}/f.txt', data=content, timeout=10)
                if put.status_code != 201:
                    return
                answer = writer.post('upload/', json={'oaio_id': 'busy', 'client_stamp': stamp,
                                                      'server_stamp': acknowledged[-1],
                                                      'client_values': {'n': n, '_file_paths': ['f.txt']}},
                                     timeout=10)
            except requests.RequestException:
                return
            if answer.status_code != 200:
                return
            acknowledged.append(stamp)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 15 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.01)
    assert len(acknowledged) >= 15, 'the writer did not get going'

    code, _ = stop(server, signal.SIGKILL)
    assert code == -signal.SIGKILL
    stop_writing.set()
    thread.join(timeout=30)
    server.start()

    last = acknowledged[-1]
    listing = ok(alice.get('oaio_stampz/')).json()
    assert len(listing) == 1
    head = listing[0]['client_stamp']
    # the head is the last acknowledged version, or the one in flight when the server died
    assert head == last or (head == in_flight[-1] and head > last), (head, last, in_flight[-3:])
    n = listing[0]['client_values']['n']
    assert ok(alice.get(f'files/busy/{head}/f.txt')).content == f'content {n}'.encode()
    # and it keeps working: a new version on that head
    ok(alice.post('upload/', json={'oaio_id': 'busy', 'client_stamp': new_stamp(), 'server_stamp': head,
                                   'client_values': {'after': 'kill'}}))
    assert ok(alice.get('changes/', params={'since': '0'})).json()['changes'][0]['oaio']['client_values'] == {
        'after': 'kill'}


def test_data_directory_permissions(server, api):
    api('alice')
    key = server.data / 'secret_key'
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_text().strip()) >= 50
    assert stat.S_IMODE(server.data.stat().st_mode) == 0o700
    code, _ = stop(server)
    assert code == 0
    server.start()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
