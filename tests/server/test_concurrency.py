"""Concurrent writers against a live server: optimistic concurrency on the head, parallel uploads,
parallel registers and file puts — no 500, no "database is locked", nothing lost."""
from __future__ import annotations

import hashlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

_stamps = itertools.count(1)


def new_stamp() -> str:
    return f'2026112512{next(_stamps):010d}'


def run_together(calls: list) -> list:
    """Run the callables in threads released at the same instant; return their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=30)
        return call()
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def upload_call(session, oaio_id: str, based_on: str, stamp: str, values: dict):
    return lambda: session.post('upload/', json={'oaio_id': oaio_id, 'client_stamp': stamp, 'server_stamp': based_on,
                                                 'client_values': values})


def assert_clean_log(server) -> None:
    log = server.log()
    assert 'database is locked' not in log
    assert 'Traceback' not in log
    assert '" 500' not in log


def test_two_devices_upload_on_the_same_head(server, api):
    laptop, phone = api('alice', device='laptop'), api('alice', device='phone')
    head = new_stamp()
    assert laptop.post('register/', json={'oaio_id': 'race', 'client_stamp': head,
                                          'client_values': {'round': 0}}).status_code == 200
    for round_ in range(1, 9):
        laptop_stamp, phone_stamp = new_stamp(), new_stamp()
        answers = run_together([upload_call(laptop, 'race', head, laptop_stamp, {'round': round_, 'by': 'laptop'}),
                                upload_call(phone, 'race', head, phone_stamp, {'round': round_, 'by': 'phone'})])
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200, 409], [answer.text for answer in answers]
        winner = next(answer for answer in answers if answer.status_code == 200).json()
        loser = next(answer for answer in answers if answer.status_code == 409).json()
        assert loser['error'] == 'conflict'
        assert loser['head'] == winner
        assert winner['client_stamp'] in (laptop_stamp, phone_stamp)
        assert winner['device_id'] == winner['client_values']['by']
        listing = laptop.get('oaio_stampz/').json()
        assert listing == [winner]
        head = winner['client_stamp']
    assert_clean_log(server)


def test_users_with_update_right_race_the_owner(server, api):
    alice, bob = api('alice'), api('bob')
    head = new_stamp()
    assert alice.post('register/', json={'oaio_id': 'shared', 'client_stamp': head,
                                         'client_values': {}}).status_code == 200
    assert alice.post('subscribe/', json={'oaio_id': 'shared', 'username': 'bob',
                                          'access_right': 'U'}).status_code == 200
    for _ in range(5):
        answers = run_together([upload_call(alice, 'shared', head, new_stamp(), {'by': 'alice'}),
                                upload_call(bob, 'shared', head, new_stamp(), {'by': 'bob'})])
        assert sorted(answer.status_code for answer in answers) == [200, 409], [a.text for a in answers]
        winner = next(answer for answer in answers if answer.status_code == 200).json()
        loser = next(answer for answer in answers if answer.status_code == 409).json()
        assert loser['head']['client_stamp'] == winner['client_stamp']
        assert loser['head']['client_values'] == winner['client_values']
        head = winner['client_stamp']
    assert_clean_log(server)


def test_twenty_concurrent_uploads_to_different_objects(server, api):
    sessions = [api(f'user{n % 4}', device=f'dev{n}') for n in range(20)]
    heads = {}
    for n, session in enumerate(sessions):
        heads[n] = new_stamp()
        answer = session.post('register/', json={'oaio_id': f'obj{n}', 'client_stamp': heads[n],
                                                 'client_values': {'n': n}})
        assert answer.status_code == 200, answer.text
    for round_ in range(3):
        stamps = {n: new_stamp() for n in heads}
        answers = run_together([upload_call(sessions[n], f'obj{n}', heads[n], stamps[n], {'n': n, 'round': round_})
                                for n in heads])
        assert [answer.status_code for answer in answers] == [200] * 20, [a.text for a in answers if not a.ok]
        heads = stamps
    for user in range(4):
        listing = sessions[user].get('oaio_stampz/').json()
        assert sorted((o['oaio_id'], o['client_stamp'], o['client_values']) for o in listing) == sorted(
            (f'obj{n}', heads[n], {'n': n, 'round': 2}) for n in range(user, 20, 4))
    assert_clean_log(server)


def test_twenty_concurrent_registers_with_files(server, api):
    sessions = [api('alice', device=f'dev{n}') for n in range(20)]
    stamp = new_stamp()
    contents = {n: f'content {n}'.encode() * 100 for n in range(20)}

    def put_and_register(n: int):
        def call():
            put = sessions[n].request('put', f'files/file{n}/{stamp}/f.txt', data=contents[n])
            if put.status_code != 201:
                return put
            return sessions[n].post('register/', json={'oaio_id': f'file{n}', 'client_stamp': stamp,
                                                       'client_values': {'_file_paths': ['f.txt']}})
        return call
    answers = run_together([put_and_register(n) for n in range(20)])
    assert [answer.status_code for answer in answers] == [200] * 20, [a.text for a in answers if not a.ok]
    for n in range(20):
        got = sessions[0].get(f'files/file{n}/{stamp}/f.txt')
        assert got.content == contents[n]
    assert_clean_log(server)


def test_concurrent_register_of_one_id(server, api):
    sessions = [api(f'user{n}') for n in range(8)]
    answers = run_together([lambda s=session: s.post('register/', json={'oaio_id': 'contested',
                                                                         'client_stamp': new_stamp(),
                                                                         'client_values': {'by': s.username}})
                            for session in sessions])
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] + [409] * 7, [answer.text for answer in answers]
    winner = next(answer for answer in answers if answer.status_code == 200).json()
    for session in sessions:
        listing = session.get('oaio_stampz/').json()
        assert listing == ([winner] if session.username == winner['username'] else [])
    assert_clean_log(server)


def test_concurrent_puts_of_the_same_content_store_it_once(server, api):
    sessions = [api('alice', device=f'dev{n}') for n in range(10)]
    content = b'the same bytes ' * 50000
    stamp = new_stamp()
    answers = run_together([lambda s=session, n=n: s.request('put', f'files/same{n}/{stamp}/x', data=content)
                            for n, session in enumerate(sessions)])
    assert [answer.status_code for answer in answers] == [201] * 10, [a.text for a in answers]
    digest = hashlib.sha256(content).hexdigest()
    assert sorted(path.name for path in (server.data / 'blobs').rglob('*') if path.is_file()) == [digest]
    assert_clean_log(server)


def test_concurrent_puts_of_one_path(server, api):
    """The same staged path put concurrently (a client retrying, two devices of one user): one of
    the contents wins, and the path can be put, registered and read afterwards."""
    sessions = [api('alice', device=f'dev{n}') for n in range(6)]
    stamp = new_stamp()
    for round_ in range(3):
        answers = run_together([lambda s=session, n=n: s.request('put', f'files/one/{stamp}/f',
                                                                 data=f'{round_}-{n}'.encode())
                                for n, session in enumerate(sessions)])
        assert [answer.status_code for answer in answers] == [201] * 6, [a.text for a in answers]
    final = sessions[0].request('put', f'files/one/{stamp}/f', data=b'final')
    assert final.status_code == 201, final.text
    answer = sessions[0].post('register/', json={'oaio_id': 'one', 'client_stamp': stamp,
                                                 'client_values': {'_file_paths': ['f']}})
    assert answer.status_code == 200, answer.text
    assert sessions[0].get(f'files/one/{stamp}/f').content == b'final'
    assert_clean_log(server)
