"""The change feed ``changes/?since=CURSOR&wait=SECONDS``: snapshot, increments, tombstones, paging,
long-poll wake-up, and the cost of idle waiters — against a live server process."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from oaio_testing import Api, ServerProcess, logged_errors, running_server, wait_for

_stamps = itertools.count(1)


def new_stamp() -> str:
    """A fresh stamp, larger than every stamp handed out before in this test run."""
    return f'2026112510{next(_stamps):010d}'


def obj(oaio_id: str, stamp: str, values: dict, username: str, right: str, device: str = 'dev1') -> dict:
    """The wire object dict the server answers for a version."""
    return {'oaio_id': oaio_id, 'client_stamp': stamp, 'server_stamp': stamp, 'client_values': values,
            'server_values': values, 'csh_id': 'oaio', 'username': username, 'device_id': device,
            'app_id': 'tests', 'csh_access_right': right}


def entry(oaio_id: str, stamp: str, values: dict, username: str, right: str, device: str = 'dev1',
          files: dict | None = None, owner: str | None = None) -> dict:
    """A feed entry: the object dict, its file manifest and its owner (by default its uploader)."""
    return {'oaio': obj(oaio_id, stamp, values, username, right, device), 'files': files or {},
            'owner': owner or username}


def register(session, oaio_id: str, values: dict | None = None, **extra) -> str:
    stamp = new_stamp()
    answer = session.post('register/', json={'oaio_id': oaio_id, 'client_stamp': stamp,
                                             'client_values': values or {}, **extra})
    assert answer.status_code == 200, answer.text
    return stamp


def upload(session, oaio_id: str, based_on: str, values: dict) -> str:
    stamp = new_stamp()
    answer = session.post('upload/', json={'oaio_id': oaio_id, 'client_stamp': stamp, 'server_stamp': based_on,
                                           'client_values': values})
    assert answer.status_code == 200, answer.text
    return stamp


def share(session, oaio_id: str, username: str, right: str) -> None:
    answer = session.post('subscribe/', json={'oaio_id': oaio_id, 'username': username, 'access_right': right})
    assert answer.status_code == 200, answer.text


def changes(session, since: str | None = None, wait: float | None = None, timeout: float = 30) -> dict:
    params = {}
    if since is not None:
        params['since'] = since
    if wait is not None:
        params['wait'] = str(wait)
    answer = session.get('changes/', params=params, timeout=timeout)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {'cursor', 'snapshot', 'more', 'changes'}, body
    assert body['cursor'].isdigit(), body
    if since:
        assert int(body['cursor']) >= int(since), (since, body)
    return body


def by_id(entries: list) -> dict:
    """Feed entries keyed by object id (each id at most once per answer)."""
    keyed = {item['oaio']['oaio_id'] if 'oaio' in item else item['oaio_id']: item for item in entries}
    assert len(keyed) == len(entries), entries
    return keyed


def test_snapshot_lists_subscribed_objects_with_files(api):
    alice, bob = api('alice'), api('bob')
    empty = changes(alice)
    assert empty == {'cursor': '0', 'snapshot': True, 'more': False, 'changes': []}

    plain = register(alice, 'plain', {'a': 1})
    content = b'hello feed'
    file_stamp = new_stamp()
    put = alice.request('put', f'files/with-file/{file_stamp}/dir/f.txt', data=content)
    assert put.status_code == 201, put.text
    answer = alice.post('register/', json={'oaio_id': 'with-file', 'client_stamp': file_stamp,
                                           'client_values': {'_file_paths': ['dir/f.txt']}})
    assert answer.status_code == 200, answer.text
    bobs_own = register(bob, 'bobs-own')
    bobs_shared = register(bob, 'bobs-shared', {'b': True})
    share(bob, 'bobs-shared', 'alice', 'r')

    snapshot = changes(alice)
    assert snapshot['snapshot'] is True and snapshot['more'] is False
    assert int(snapshot['cursor']) > 0
    assert by_id(snapshot['changes']) == {
        'plain': entry('plain', plain, {'a': 1}, 'alice', 'C'),
        'with-file': entry('with-file', file_stamp, {'_file_paths': ['dir/f.txt']}, 'alice', 'C',
                           files={'dir/f.txt': {'sha256': hashlib.sha256(content).hexdigest(), 'size': len(content)}}),
        'bobs-shared': entry('bobs-shared', bobs_shared, {'b': True}, 'bob', 'r'),
    }
    assert by_id(changes(bob)['changes']) == {
        'bobs-own': entry('bobs-own', bobs_own, {}, 'bob', 'C'),
        'bobs-shared': entry('bobs-shared', bobs_shared, {'b': True}, 'bob', 'C'),
    }
    # an empty since is a snapshot too
    assert changes(alice, since='') == snapshot
    # the snapshot's cursor continues without repeating anything
    assert changes(alice, since=snapshot['cursor']) == {'cursor': snapshot['cursor'], 'snapshot': False,
                                                        'more': False, 'changes': []}


def test_incremental_changes_and_tombstones(api):
    alice, bob = api('alice'), api('bob')
    mine = register(alice, 'mine', {'v': 1})
    theirs = register(bob, 'theirs', {'t': 1})
    cursor = changes(alice)['cursor']

    # a new version of one's own object
    mine2 = upload(alice, 'mine', mine, {'v': 2})
    answer = changes(alice, since=cursor)
    assert answer['snapshot'] is False and answer['more'] is False
    assert answer['changes'] == [entry('mine', mine2, {'v': 2}, 'alice', 'C')]
    assert int(answer['cursor']) > int(cursor)
    cursor = answer['cursor']
    assert changes(alice, since=cursor)['changes'] == []

    # a new subscription given by another user
    share(bob, 'theirs', 'alice', 'r')
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [entry('theirs', theirs, {'t': 1}, 'bob', 'r')]
    cursor = answer['cursor']

    # a changed right
    share(bob, 'theirs', 'alice', 'U')
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [entry('theirs', theirs, {'t': 1}, 'bob', 'U')]
    cursor = answer['cursor']

    # another user's new version of a shared object reaches both subscribers
    bob_cursor = changes(bob)['cursor']
    theirs2 = upload(bob, 'theirs', theirs, {'t': 2})
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [entry('theirs', theirs2, {'t': 2}, 'bob', 'U')]
    cursor = answer['cursor']
    assert changes(bob, since=bob_cursor)['changes'] == [
        entry('theirs', theirs2, {'t': 2}, 'bob', 'C')]

    # alice (right U) uploads: the version names her, the entry names the owner bob
    bob_cursor = changes(bob)['cursor']
    theirs3 = upload(alice, 'theirs', theirs2, {'t': 3})
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [entry('theirs', theirs3, {'t': 3}, 'alice', 'U', owner='bob')]
    cursor = answer['cursor']
    assert changes(bob, since=bob_cursor)['changes'] == [
        entry('theirs', theirs3, {'t': 3}, 'alice', 'C', owner='bob')]

    # the owner removes the subscription: a tombstone for alice
    share(bob, 'theirs', 'alice', 'x')
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [{'oaio_id': 'theirs', 'gone': 'unsubscribed'}]
    cursor = answer['cursor']

    # subscribed again, then alice unsubscribes herself
    share(bob, 'theirs', 'alice', 'r')
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [entry('theirs', theirs3, {'t': 3}, 'alice', 'r', owner='bob')]
    cursor = answer['cursor']
    share(alice, 'theirs', 'alice', 'x')
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [{'oaio_id': 'theirs', 'gone': 'unsubscribed'}]
    cursor = answer['cursor']

    # deletion: a tombstone for every subscriber, the deleter included
    share(bob, 'theirs', 'alice', 'D')
    cursor = changes(alice, since=cursor)['cursor']
    bob_cursor = changes(bob)['cursor']
    deleted = alice.post('delete/', json={'oaio_id': 'theirs'})
    assert deleted.status_code == 200, deleted.text
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [{'oaio_id': 'theirs', 'gone': 'deleted'}]
    cursor = answer['cursor']
    assert changes(bob, since=bob_cursor)['changes'] == [{'oaio_id': 'theirs', 'gone': 'deleted'}]

    # several changes of one object since the cursor come as one entry with its current head
    mine3 = upload(alice, 'mine', mine2, {'v': 3})
    mine4 = upload(alice, 'mine', mine3, {'v': 4})
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [entry('mine', mine4, {'v': 4}, 'alice', 'C')]

    # an old cursor still works: everything after it, current state
    assert by_id(changes(alice, since='0')['changes']) == {
        'mine': entry('mine', mine4, {'v': 4}, 'alice', 'C'),
        'theirs': {'oaio_id': 'theirs', 'gone': 'deleted'},
    }


def test_other_users_changes_do_not_show(api):
    alice, bob = api('alice'), api('bob')
    cursor = changes(alice)['cursor']
    stamp = register(bob, 'private')
    upload(bob, 'private', stamp, {'x': 1})
    assert changes(alice, since=cursor)['changes'] == []
    assert changes(alice)['changes'] == []


def test_cursors_never_skip_a_change(api):
    """Objects registered concurrently by several sessions while a reader follows the feed: every
    one of them is seen exactly once as a new object, and nothing after the final catch-up."""
    alice = api('alice')
    writers = [api('alice', device=f'writer{n}') for n in range(6)]
    reader = api('alice', device='reader')
    cursor = changes(reader)['cursor']
    seen: dict[str, str] = {}
    errors: list = []
    rounds: list = []

    def write(n: int) -> None:
        try:
            for i in range(40):
                register(writers[n], f'w{n}-{i}', {'i': i})
        except BaseException as exc:     # reported in the main thread
            errors.append(exc)

    def follow(since: str) -> str:
        answer = changes(reader, since=since)
        rounds.append(len(answer['changes']))
        for entry in answer['changes']:
            assert 'oaio' in entry, entry
            seen.setdefault(entry['oaio']['oaio_id'], answer['cursor'])
        return answer['cursor']

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(writers))]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        cursor = follow(cursor)
    for thread in threads:
        thread.join()
    assert errors == []
    while True:
        previous, cursor = cursor, follow(cursor)
        if cursor == previous:
            break
    expected = {f'w{n}-{i}' for n in range(len(writers)) for i in range(40)}
    assert set(seen) == expected
    assert sum(rounds) == len(expected)      # each new object came exactly once
    assert len([count for count in rounds if count]) >= 2, rounds   # the reader did follow along
    assert changes(alice, since=cursor)['changes'] == []
    assert {entry['oaio']['oaio_id'] for entry in changes(alice)['changes']} == expected


def test_paging_with_more(api):
    """More than one page (OAIO_FEED_PAGE = 1000 change rows) of changes: the pages together hold
    every object once, ``more`` says whether to ask again."""
    alice = api('alice')
    cursor = changes(alice)['cursor']
    count = 1001
    with ThreadPoolExecutor(4) as pool:
        sessions = [api('alice', device=f'd{n}') for n in range(4)]
        list(pool.map(lambda i: register(sessions[i % 4], f'p{i:04d}', {'i': i}), range(count)))

    first = changes(alice, since=cursor)
    assert first['more'] is True
    assert len(first['changes']) == 1000
    second = changes(alice, since=first['cursor'])
    assert second['more'] is False
    assert len(second['changes']) == 1
    ids = [entry['oaio']['oaio_id'] for entry in first['changes'] + second['changes']]
    assert sorted(ids) == [f'p{i:04d}' for i in range(count)]
    assert changes(alice, since=second['cursor']) == {'cursor': second['cursor'], 'snapshot': False,
                                                      'more': False, 'changes': []}
    # the snapshot is never paged
    snapshot = changes(alice)
    assert snapshot['more'] is False and len(snapshot['changes']) == count
    assert snapshot['cursor'] == second['cursor']


def test_cost_grows_with_changes_not_objects(api):
    alice = api('alice')
    stamps = {f'many{i:03d}': register(alice, f'many{i:03d}', {'i': i}) for i in range(300)}
    cursor = changes(alice)['cursor']
    new = upload(alice, 'many123', stamps['many123'], {'i': 'changed'})
    answer = changes(alice, since=cursor)
    assert answer['changes'] == [entry('many123', new, {'i': 'changed'}, 'alice', 'C')]
    assert int(answer['cursor']) > int(cursor)


def test_invalid_since_and_wait(api):
    alice = api('alice')
    for since in ('abc', '-1', '1.5', ' 1', '1e3', '9' * 20, '\uff19', '\u00b2', '1\u00b2'):
        answer = alice.get('changes/', params={'since': since})
        assert answer.status_code == 400, (since, answer.text)
        assert answer.json()['error'] == 'invalid', answer.text
        assert 'since' in answer.json()['detail']
    for wait in ('abc', '-1', 'nan', 'inf', '-inf', '1s'):
        answer = alice.get('changes/', params={'since': '0', 'wait': wait})
        assert answer.status_code == 400, (wait, answer.text)
        assert answer.json()['error'] == 'invalid', answer.text
        assert 'wait' in answer.json()['detail']
    # the server still answers
    assert changes(alice, since='0')['changes'] == []


def test_unauthenticated_and_wrong_method(server, api):
    answer = requests.get(server.url + 'changes/', params={'since': '0'}, timeout=30)
    assert answer.status_code == 401
    assert answer.json()['error'] == 'not_authenticated'
    answer = requests.get(server.url + 'changes/', cookies={'sessionid': 'not-a-session'}, timeout=30)
    assert answer.status_code == 401
    alice = api('alice')
    assert alice.post('logout/').status_code == 200
    answer = alice.get('changes/')
    assert answer.status_code == 401 and answer.json()['error'] == 'not_authenticated'
    alice = api('alice')
    answer = alice.post('changes/')
    assert answer.status_code == 405 and answer.json()['error'] == 'method_not_allowed'


def _wait_in_thread(session, since: str, wait: float):
    """Start a long poll in a thread; return the thread and a dict that gets its result."""
    result: dict = {}

    def run() -> None:
        started = time.monotonic()
        try:
            result['answer'] = changes(session, since=since, wait=wait, timeout=wait + 30)
        except BaseException as exc:     # reported by the caller
            result['error'] = exc
        result['returned'] = time.monotonic()
        result['elapsed'] = result['returned'] - started
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _settle(session, since: str) -> None:
    """Two plain feed requests after a long poll was sent: the long poll has been read and has run
    its first query by then (the server's worker threads take requests in order)."""
    for _ in range(2):
        assert changes(session, since=since, wait=0)['changes'] == []


def test_long_poll_wakes_up_on_a_change(api):
    alice, laptop = api('alice'), api('alice', device='laptop')
    stamp = register(alice, 'watched', {'n': 0})
    cursor = changes(alice)['cursor']
    thread, result = _wait_in_thread(alice, cursor, 30)
    _settle(laptop, cursor)
    assert thread.is_alive(), result   # nothing changed yet: still waiting
    new = upload(laptop, 'watched', stamp, {'n': 1})
    uploaded = time.monotonic()
    thread.join(timeout=40)
    print('\nwake-up after upload', result['returned'] - uploaded)
    assert not thread.is_alive()
    assert 'error' not in result, result
    assert result['answer']['changes'] == [entry('watched', new, {'n': 1}, 'alice', 'C', device='laptop')]
    assert result['elapsed'] < 10, result
    assert result['returned'] - uploaded < 10, result
    assert int(result['answer']['cursor']) > int(cursor)


def test_long_poll_wakes_up_on_a_share_by_another_user(api):
    alice, bob = api('alice'), api('bob')
    cursor = changes(alice)['cursor']
    stamp = register(bob, 'gift', {'for': 'alice'})
    thread, result = _wait_in_thread(alice, cursor, 30)
    _settle(api('alice', device='probe'), cursor)
    assert thread.is_alive(), result
    share(bob, 'gift', 'alice', 'r')
    shared = time.monotonic()
    thread.join(timeout=40)
    print('\nwake-up after share', result['returned'] - shared)
    assert 'error' not in result, result
    assert result['answer']['changes'] == [entry('gift', stamp, {'for': 'alice'}, 'bob', 'r')]
    assert result['elapsed'] < 10, result


def test_long_poll_wakes_up_on_a_commit_of_another_server_process(server, api):
    """Two server processes on one database, as behind a load balancer: an upload committed by one
    wakes a long poll waiting in the other (on SQLite through the watcher's data_version probe)."""
    alice = api('alice')
    stamp = register(alice, 'elsewhere', {'n': 0})
    cursor = changes(alice)['cursor']
    other = ServerProcess(data=server.data, env=server.env)
    other.start()
    try:
        laptop = Api(other, 'alice', device='laptop')
        assert laptop.login().ok
        thread, result = _wait_in_thread(alice, cursor, 30)
        _settle(api('alice', device='probe'), cursor)
        assert thread.is_alive(), result     # nothing changed yet: still waiting
        new = upload(laptop, 'elsewhere', stamp, {'n': 1})
        thread.join(timeout=40)
        assert 'error' not in result, result
        assert result['answer']['changes'] == [entry('elsewhere', new, {'n': 1}, 'alice', 'C', device='laptop')]
        assert result['elapsed'] < 10, result       # woken, not timed out after 30 s
    finally:
        assert other.stop() == 0, other.log()


def _terminate_change_listener(database_url: str) -> int:
    """End the LISTEN connection of the change watchers on this database as a failing network
    would; return how many there were."""
    import psycopg
    with psycopg.connect(database_url, autocommit=True) as conn:
        return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "application_name = 'oaio change watcher' AND datname = current_database() "
                                "AND pid <> pg_backend_pid()").fetchall())


@pytest.mark.skipif(not os.environ.get('OAIO_TEST_DATABASE_URL'), reason='LISTEN/NOTIFY is PostgreSQL only')
def test_long_poll_is_woken_by_a_notification_of_another_server_process(tmp_path, monkeypatch):
    """PostgreSQL: the watcher LISTENs for the NOTIFY that a change-recording commit sends, so a
    commit in another server process wakes a long poll within moments, not at the watcher's
    fallback look (every 30 s here) — also after its LISTEN connection was lost and came back."""
    monkeypatch.setenv('OAIO_FEED_FALLBACK_INTERVAL', '30')
    with running_server(tmp_path / 'server-data') as server:
        server.adduser('alice')
        alice, probe = Api(server, 'alice'), Api(server, 'alice', device='probe')
        assert alice.login().ok and probe.login().ok
        stamp = register(alice, 'notified', {'n': 0})
        other = ServerProcess(data=server.data, env=server.env)
        other.start()
        try:
            laptop = Api(other, 'alice', device='laptop')
            assert laptop.login().ok

            def woken_by_upload(n: int, before_upload=lambda: None) -> float:
                nonlocal stamp
                cursor = changes(alice)['cursor']
                thread, result = _wait_in_thread(alice, cursor, 50)
                _settle(probe, cursor)
                assert thread.is_alive(), result     # nothing changed yet: still waiting
                before_upload()
                stamp = upload(laptop, 'notified', stamp, {'n': n})
                uploaded = time.monotonic()
                thread.join(timeout=80)
                assert 'error' not in result, result
                assert result['answer']['changes'] == [entry('notified', stamp, {'n': n}, 'alice', 'C',
                                                             device='laptop')]
                return result['returned'] - uploaded

            assert woken_by_upload(1) < 5           # the fallback look would take up to 30 s

            def reconnect() -> None:
                assert _terminate_change_listener(server.env['DATABASE_URL']) == 1
                wait_for(lambda: 'listening for commits of other server processes again' in server.log(),
                         timeout=20, what='the watcher listens again')
            assert woken_by_upload(2, before_upload=reconnect) < 5
        finally:
            assert other.stop() == 0, other.log()
    assert 'change watcher lost its LISTEN connection' in server.log()
    assert not logged_errors(server.log()), server.log()
    assert not logged_errors(other.log()), other.log()


def test_long_poll_answers_at_once_when_changes_are_pending(api):
    alice = api('alice')
    cursor = changes(alice)['cursor']
    stamp = register(alice, 'pending')
    started = time.monotonic()
    answer = changes(alice, since=cursor, wait=30)
    assert time.monotonic() - started < 10
    assert answer['changes'] == [entry('pending', stamp, {}, 'alice', 'C')]


def test_wait_without_change_returns_empty_after_the_wait(api):
    alice, bob = api('alice'), api('bob')
    register(alice, 'quiet')
    cursor = changes(alice)['cursor']
    thread, result = _wait_in_thread(alice, cursor, 1.5)
    register(bob, 'elsewhere')              # another user's change does not end alice's wait
    thread.join(timeout=40)
    assert 'error' not in result, result
    assert result['answer'] == {'cursor': cursor, 'snapshot': False, 'more': False, 'changes': []}
    assert 1.5 <= result['elapsed'] < 10, result


# ---------------------------------------------------------------------------------------------
# 500 idle waiters


def _proc_status(pid: int) -> dict:
    with open(f'/proc/{pid}/status') as status:
        return dict(line.rstrip('\n').split(':\t', 1) for line in status if ':\t' in line)


def _kib(value: str) -> int:
    number, unit = value.split()
    assert unit == 'kB'
    return int(number)


def _open_long_poll(server, sessionid: str, since: str, wait: float) -> socket.socket:
    sock = socket.create_connection(('127.0.0.1', server.port), timeout=30)
    sock.sendall((f'GET /api/changes/?since={since}&wait={wait} HTTP/1.1\r\n'
                  f'Host: {server.host}\r\nCookie: sessionid={sessionid}\r\nConnection: close\r\n\r\n').encode())
    sock.setblocking(False)
    return sock


def _has_data(sock: socket.socket) -> bool:
    """Whether the server has answered or closed the connection."""
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    return True


def _read_answers(socks: list, deadline: float) -> list:
    """Read each socket until the server closes it; return the raw responses of those it closed."""
    selector = selectors.DefaultSelector()
    received = {sock: b'' for sock in socks}
    finished = []
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    while len(finished) < len(socks) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
            chunk = key.fileobj.recv(65536)
            if chunk:
                received[key.fileobj] += chunk
            else:
                selector.unregister(key.fileobj)
                finished.append(received[key.fileobj])
    selector.close()
    return finished


def _parse(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b'\r\n\r\n')
    status = int(head.split(b' ', 2)[1])
    return status, body


def test_500_idle_waiters_are_cheap(server, api):
    alice, bob = api('alice'), api('bob')
    stamp = register(alice, 'hot', {'n': 0})
    alice_cursor, bob_cursor = changes(alice)['cursor'], changes(bob)['cursor']
    pid = server.process.pid
    before = _proc_status(pid)
    fds_before = len(os.listdir(f'/proc/{pid}/fd'))
    thread_counts = [int(before['Threads'])]

    socks_alice, socks_bob = [], []
    for n in range(500):
        if n % 2:
            socks_bob.append(_open_long_poll(server, bob.session.cookies['sessionid'], bob_cursor, 60))
        else:
            socks_alice.append(_open_long_poll(server, alice.session.cookies['sessionid'], alice_cursor, 60))
        if n % 50 == 0:
            thread_counts.append(int(_proc_status(pid)['Threads']))
    try:
        # all 500 connections accepted by the server, then every request read and queried
        deadline = time.monotonic() + 30
        while (fds := len(os.listdir(f'/proc/{pid}/fd'))) < fds_before + 500 and time.monotonic() < deadline:
            thread_counts.append(int(_proc_status(pid)['Threads']))
            time.sleep(0.01)
        assert fds >= fds_before + 500, (fds_before, fds)
        _settle(alice, alice_cursor)
        _settle(bob, bob_cursor)
        idle = _proc_status(pid)
        thread_counts.append(int(idle['Threads']))
        print(f"\nserver before: Threads {before['Threads']}, VmRSS {before['VmRSS'].strip()}; "
              f"with 500 waiters: Threads {idle['Threads']}, VmRSS {idle['VmRSS'].strip()}, "
              f"VmHWM {idle['VmHWM'].strip()}; max Threads seen {max(thread_counts)}")
        assert max(thread_counts) < 50, thread_counts
        assert _kib(idle['VmRSS']) < 300 * 1024, idle['VmRSS']
        assert not any(_has_data(sock) for sock in socks_alice + socks_bob), 'a waiter was answered without a change'

        new = upload(alice, 'hot', stamp, {'n': 1})
        answers = _read_answers(socks_alice, time.monotonic() + 30)
        assert len(answers) == len(socks_alice) == 250
        expected = changes(alice, since=alice_cursor)
        assert expected['changes'] == [entry('hot', new, {'n': 1}, 'alice', 'C')]
        for raw in answers:
            status, body = _parse(raw)
            assert status == 200, raw
            assert json.loads(body) == expected
        # bob's waiters are still waiting; after the check they give up (the server notices the disconnect)
        assert not any(_has_data(sock) for sock in socks_bob), 'bob was answered on a change of alice'
        thread_counts.append(int(_proc_status(pid)['Threads']))
        assert max(thread_counts) < 50, thread_counts
    finally:
        for sock in socks_alice + socks_bob:
            sock.close()
    # the server notices the gone waiters and keeps serving
    assert changes(bob, since=bob_cursor)['changes'] == []
