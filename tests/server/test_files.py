"""The server as storage host: ``files/<oaio_id>/<stamp>/<path>``, content-addressed blobs,
``blobs/missing/``, version visibility and streaming of large files — against a live server."""
from __future__ import annotations

import hashlib
import itertools
import os
import time
from urllib.parse import quote

import requests

from oaio_testing import sha

_stamps = itertools.count(1)


def new_stamp() -> str:
    return f'2026112511{next(_stamps):010d}'


def put(session, oaio_id: str, stamp: str, path: str, content: bytes, **kwargs) -> requests.Response:
    return session.request('put', f'files/{quote(oaio_id)}/{stamp}/{quote(path)}', data=content, **kwargs)


def put_ok(session, oaio_id: str, stamp: str, path: str, content: bytes) -> None:
    answer = put(session, oaio_id, stamp, path, content)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {'sha256': sha(content), 'size': len(content)}


def register(session, oaio_id: str, stamp: str, paths: list, files: dict | None = None) -> requests.Response:
    body = {'oaio_id': oaio_id, 'client_stamp': stamp, 'client_values': {'_file_paths': paths}}
    if files is not None:
        body['files'] = files
    return session.post('register/', json=body)


def upload(session, oaio_id: str, stamp: str, based_on: str, paths: list,
           files: dict | None = None) -> requests.Response:
    body = {'oaio_id': oaio_id, 'client_stamp': stamp, 'server_stamp': based_on,
            'client_values': {'_file_paths': paths}}
    if files is not None:
        body['files'] = files
    return session.post('upload/', json=body)


def get_file(session, oaio_id: str, stamp: str, path: str) -> requests.Response:
    return session.get(f'files/{quote(oaio_id)}/{stamp}/{quote(path)}')


def stored_blobs(server) -> list:
    return sorted(path.name for path in (server.data / 'blobs').rglob('*') if path.is_file())


def wait_until_empty(directory, seconds: float = 10) -> list:
    """The files left in ``directory`` once it is empty or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while (left := sorted(os.listdir(directory))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def proc_status(pid: int) -> dict:
    with open(f'/proc/{pid}/status') as status:
        return dict(line.rstrip('\n').split(':\t', 1) for line in status if ':\t' in line)


def kib(value: str) -> int:
    number, unit = value.split()
    assert unit == 'kB'
    return int(number)


def test_put_register_get(api):
    alice = api('alice')
    stamp = new_stamp()
    files = {'a.txt': b'alpha', 'dir/sub/b.bin': bytes(range(256)) * 10, 'Jürgen ⁄ notes.md': b'# hi\n'}
    for path, content in files.items():
        put_ok(alice, 'doc', stamp, path, content)
    answer = register(alice, 'doc', stamp, list(files))
    assert answer.status_code == 200, answer.text
    for path, content in files.items():
        got = get_file(alice, 'doc', stamp, path)
        assert got.status_code == 200, got.text
        assert got.content == content
        assert got.headers['X-OAIO-SHA256'] == sha(content)
        assert got.headers['Content-Length'] == str(len(content))
    # the change feed carries the manifest
    snapshot = alice.get('changes/').json()
    assert snapshot['changes'][0]['files'] == {path: {'sha256': sha(content), 'size': len(content)}
                                               for path, content in files.items()}
    # a path the version does not have, and a version that does not exist
    assert get_file(alice, 'doc', stamp, 'nope.txt').status_code == 404
    assert get_file(alice, 'doc', new_stamp(), 'a.txt').status_code == 404


MIDDLEWARE_HEADERS = ('X-Content-Type-Options', 'X-Frame-Options', 'Referrer-Policy', 'Cross-Origin-Opener-Policy',
                      'Vary')


def test_download_answers_as_django_would(api):
    """GET files/ is served in front of Django (downloads.py) with Django's checks and headers."""
    alice = api('alice')
    stamp = new_stamp()
    put_ok(alice, 'doc', stamp, 'a.txt', b'alpha')
    assert register(alice, 'doc', stamp, ['a.txt']).status_code == 200
    from_django = alice.get('oaio_stampz/')
    expected = {name: from_django.headers[name] for name in MIDDLEWARE_HEADERS}
    for answer in (get_file(alice, 'doc', stamp, 'a.txt'), get_file(alice, 'doc', stamp, 'nope.txt'),
                   requests.get(alice.server.url + f'files/doc/{stamp}/a.txt', timeout=30)):
        assert {name: answer.headers.get(name) for name in MIDDLEWARE_HEADERS} == expected, answer.headers
    # a malformed X-OAIO header is refused as by every endpoint
    bad_device = {'X-OAIO-dvc': "b'\\xff'"}
    answer = alice.get(f'files/doc/{stamp}/a.txt', headers=bad_device)
    assert answer.status_code == 400 and answer.json()['error'] == 'invalid', answer.text
    assert alice.get('oaio_stampz/', headers=bad_device).json() == answer.json()
    # other methods than GET still reach Django
    assert alice.session.head(alice.server.url + f'files/doc/{stamp}/a.txt', timeout=30).status_code == 405


def test_download_cut_off_by_the_client(api):
    """A client that goes away mid-download leaves the server well (and nothing in its log)."""
    alice = api('alice')
    stamp = new_stamp()
    content = os.urandom(8 * 1024 * 1024)
    put_ok(alice, 'big', stamp, 'big.bin', content)
    assert register(alice, 'big', stamp, ['big.bin']).status_code == 200
    for _ in range(3):
        with alice.session.get(alice.server.url + f'files/big/{stamp}/big.bin', stream=True, timeout=30) as got:
            assert got.status_code == 200
            assert len(got.raw.read(1000)) == 1000
    assert get_file(alice, 'big', stamp, 'big.bin').content == content


def test_new_version_keeps_old_files_readable(api):
    alice = api('alice')
    first, second = new_stamp(), new_stamp()
    put_ok(alice, 'doc', first, 'f.txt', b'version one')
    assert register(alice, 'doc', first, ['f.txt']).status_code == 200
    put_ok(alice, 'doc', second, 'f.txt', b'version two')
    answer = upload(alice, 'doc', second, first, ['f.txt'])
    assert answer.status_code == 200, answer.text
    assert get_file(alice, 'doc', first, 'f.txt').content == b'version one'
    assert get_file(alice, 'doc', second, 'f.txt').content == b'version two'
    # a stored version never changes
    answer = put(alice, 'doc', first, 'f.txt', b'rewritten')
    assert answer.status_code == 400, answer.text
    assert get_file(alice, 'doc', first, 'f.txt').content == b'version one'


def test_same_content_is_stored_once(server, api):
    alice, bob = api('alice'), api('bob')
    content = b'shared content ' * 1000
    assert stored_blobs(server) == []
    stamp1, stamp2, stamp3 = new_stamp(), new_stamp(), new_stamp()
    put_ok(alice, 'one', stamp1, 'x.txt', content)
    put_ok(alice, 'two', stamp2, 'other/name.txt', content)
    put_ok(bob, 'three', stamp3, 'y.txt', content)
    assert register(alice, 'one', stamp1, ['x.txt']).status_code == 200
    assert register(alice, 'two', stamp2, ['other/name.txt']).status_code == 200
    assert register(bob, 'three', stamp3, ['y.txt']).status_code == 200
    assert stored_blobs(server) == [sha(content)]
    assert get_file(alice, 'two', stamp2, 'other/name.txt').content == content
    assert get_file(bob, 'three', stamp3, 'y.txt').content == content
    put_ok(alice, 'one', new_stamp(), 'new.txt', b'different')
    assert stored_blobs(server) == sorted([sha(content), sha(b'different')])
    assert wait_until_empty(server.data / 'tmp') == []


def test_blobs_missing(api):
    alice = api('alice')
    stored, absent1, absent2 = b'stored', b'never sent', b'nor this'
    put_ok(alice, 'doc', new_stamp(), 'a', stored)
    hashes = [sha(absent1), sha(stored), sha(absent2)]
    answer = alice.post('blobs/missing/', json={'sha256': hashes})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {'missing': [sha(absent1), sha(absent2)]}
    assert alice.post('blobs/missing/', json={'sha256': []}).json() == {'missing': []}
    for bad in ({'sha256': ['XYZ']}, {'sha256': [sha(stored).upper()]}, {'sha256': 'abc'}, {},
                {'sha256': [sha(stored)] * 10001}):
        answer = alice.post('blobs/missing/', json=bad)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()['error'] == 'invalid'


def test_declared_hash_of_content_the_caller_holds_needs_no_put(server, api):
    alice, bob = api('alice'), api('bob')
    content = b'already on the server'
    put_ok(bob, 'bobs', new_stamp(), 'z', content)       # another user's staged copy proves nothing for alice
    refused = register(alice, 'doc', new_stamp(), ['copy.txt'], files={'copy.txt': sha(content)})
    assert refused.status_code == 400 and refused.json()['missing'] == ['copy.txt'], refused.text
    put_ok(alice, 'elsewhere', new_stamp(), 'y', content)   # alice's own copy, sent for another object
    stamp = new_stamp()
    answer = register(alice, 'doc', stamp, ['copy.txt'], files={'copy.txt': sha(content)})
    assert answer.status_code == 200, answer.text
    got = get_file(alice, 'doc', stamp, 'copy.txt')
    assert got.status_code == 200 and got.content == content
    # an upload too: one file unchanged by hash, one new by PUT
    second = new_stamp()
    put_ok(alice, 'doc', second, 'new.txt', b'new')
    answer = upload(alice, 'doc', second, stamp, ['copy.txt', 'new.txt'], files={'copy.txt': sha(content)})
    assert answer.status_code == 200, answer.text
    assert get_file(alice, 'doc', second, 'copy.txt').content == content
    assert get_file(alice, 'doc', second, 'new.txt').content == b'new'
    assert stored_blobs(server) == sorted([sha(content), sha(b'new')])
    # a declared hash the server does not have
    third = new_stamp()
    answer = upload(alice, 'doc', third, second, ['copy.txt'], files={'copy.txt': sha(b'unknown')})
    assert answer.status_code == 400, answer.text
    assert answer.json()['missing'] == ['copy.txt']
    # a declared path that is not among the version's file paths
    answer = upload(alice, 'doc', third, second, ['copy.txt'], files={'copy.txt': sha(content), 'extra': sha(content)})
    assert answer.status_code == 400, answer.text
    assert answer.json()['error'] == 'invalid'
    assert alice.get('oaio_stampz/').json()[0]['client_stamp'] == second


def test_version_with_missing_files_is_never_visible(api):
    alice, bob = api('alice'), api('bob')
    stamp = new_stamp()
    put_ok(alice, 'doc', stamp, 'present.txt', b'here')
    answer = register(alice, 'doc', stamp, ['present.txt', 'absent.txt', 'dir/also-absent'])
    assert answer.status_code == 400, answer.text
    assert answer.json()['error'] == 'invalid'
    assert answer.json()['missing'] == ['absent.txt', 'dir/also-absent']
    # the object does not exist: for its would-be owner, for others, in every listing
    assert alice.get('oaio_stampz/').json() == []
    assert alice.get('changes/').json()['changes'] == []
    assert alice.get('changes/', params={'since': '0'}).json()['changes'] == []
    assert alice.get('user_subz/doc').json() == [{'username': 'alice', 'access_right': 'x'},
                                                 {'username': 'bob', 'access_right': 'x'}]
    assert get_file(alice, 'doc', stamp, 'present.txt').status_code == 404
    assert get_file(bob, 'doc', stamp, 'present.txt').status_code == 404

    # once the missing files are there, the same register works (the id is still free)
    put_ok(alice, 'doc', stamp, 'absent.txt', b'now here')
    put_ok(alice, 'doc', stamp, 'dir/also-absent', b'me too')
    answer = register(alice, 'doc', stamp, ['present.txt', 'absent.txt', 'dir/also-absent'])
    assert answer.status_code == 200, answer.text

    # an upload with a missing file leaves the head where it was
    second = new_stamp()
    answer = upload(alice, 'doc', second, stamp, ['present.txt', 'later.txt'], files={'present.txt': sha(b'here')})
    assert answer.status_code == 400, answer.text
    assert answer.json()['missing'] == ['later.txt']
    assert [o['client_stamp'] for o in alice.get('oaio_stampz/').json()] == [stamp]
    assert get_file(alice, 'doc', second, 'present.txt').status_code == 404


def test_staged_files_are_not_readable(api):
    alice = api('alice')
    stamp = new_stamp()
    put_ok(alice, 'draft', stamp, 'a.txt', b'staged only')
    answer = get_file(alice, 'draft', stamp, 'a.txt')
    assert answer.status_code == 404 and answer.json()['error'] == 'not_found'


def test_hash_mismatch(server, api):
    alice = api('alice')
    stamp = new_stamp()
    answer = put(alice, 'doc', stamp, 'a.txt', b'the real content', headers={'X-OAIO-SHA256': sha(b'other content')})
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body['error'] == 'invalid'
    assert sha(b'other content') in body['detail']
    assert body['sha256'] == sha(b'the real content')
    assert stored_blobs(server) == []
    assert wait_until_empty(server.data / 'tmp') == []
    answer = register(alice, 'doc', stamp, ['a.txt'])
    assert answer.status_code == 400 and answer.json()['missing'] == ['a.txt']
    # a malformed declared hash
    answer = put(alice, 'doc', stamp, 'a.txt', b'x', headers={'X-OAIO-SHA256': 'not-a-hash'})
    assert answer.status_code == 400 and answer.json()['error'] == 'invalid'
    # the matching hash is accepted
    answer = put(alice, 'doc', stamp, 'a.txt', b'the real content',
                 headers={'X-OAIO-SHA256': sha(b'the real content')})
    assert answer.status_code == 201, answer.text
    assert register(alice, 'doc', stamp, ['a.txt']).status_code == 200
    assert stored_blobs(server) == [sha(b'the real content')]


def test_file_access_follows_subscriptions(api):
    alice, bob = api('alice'), api('bob')
    stamp = new_stamp()
    put_ok(alice, 'private', stamp, 'secret.txt', b'for alice')
    assert register(alice, 'private', stamp, ['secret.txt']).status_code == 200
    answer = get_file(bob, 'private', stamp, 'secret.txt')
    assert answer.status_code == 404 and answer.json()['error'] == 'not_found'
    assert b'for alice' not in answer.content
    # a non-subscriber cannot add files to the object's next version either
    answer = put(bob, 'private', new_stamp(), 'evil.txt', b'x')
    assert answer.status_code == 404, answer.text

    assert alice.post('subscribe/', json={'oaio_id': 'private', 'username': 'bob',
                                          'access_right': 'r'}).status_code == 200
    assert get_file(bob, 'private', stamp, 'secret.txt').content == b'for alice'
    answer = put(bob, 'private', new_stamp(), 'evil.txt', b'x')
    assert answer.status_code == 403 and answer.json()['error'] == 'forbidden'

    assert alice.post('subscribe/', json={'oaio_id': 'private', 'username': 'bob',
                                          'access_right': 'x'}).status_code == 200
    assert get_file(bob, 'private', stamp, 'secret.txt').status_code == 404
    # and without a session at all
    anonymous = requests.get(alice.server.url + f'files/private/{stamp}/secret.txt', timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()['error'] == 'not_authenticated'


def test_delete_staged_files(api):
    alice, bob = api('alice'), api('bob')
    stamp = new_stamp()
    for path in ('keep.txt', 'drop.txt', 'dir/a', 'dir/b', 'dirx/c'):
        put_ok(alice, 'doc', stamp, path, path.encode())
    answer = alice.request('delete', f'files/doc/{stamp}/drop.txt')
    assert answer.status_code == 200 and answer.json() == {'deleted': 1}, answer.text
    answer = alice.request('delete', f'files/doc/{stamp}/dir')
    assert answer.status_code == 200 and answer.json() == {'deleted': 2}, answer.text
    # another user's delete does not touch alice's staged files
    answer = bob.request('delete', f'files/doc/{stamp}/')
    assert answer.status_code == 200 and answer.json() == {'deleted': 0}, answer.text
    answer = register(alice, 'doc', stamp, ['keep.txt', 'drop.txt', 'dir/a', 'dirx/c'])
    assert answer.status_code == 400 and answer.json()['missing'] == ['dir/a', 'drop.txt']
    answer = alice.request('delete', f'files/doc/{stamp}/')
    assert answer.status_code == 200 and answer.json() == {'deleted': 2}, answer.text
    answer = register(alice, 'doc', stamp, ['keep.txt'])
    assert answer.status_code == 400 and answer.json()['missing'] == ['keep.txt']
    # invalid addresses
    answer = alice.request('delete', f'files/doc/{stamp}/dir/%2E%2E/x')     # not normalized by the client
    assert answer.status_code == 400 and answer.json()['error'] == 'invalid'
    assert alice.request('delete', 'files/doc/not-a-stamp/x').status_code == 400


def test_delete_of_stored_version_files_is_a_no_op(api):
    alice = api('alice')
    stamp = new_stamp()
    put_ok(alice, 'doc', stamp, 'f', b'stored')
    assert register(alice, 'doc', stamp, ['f']).status_code == 200
    answer = alice.request('delete', f'files/doc/{stamp}/f')
    assert answer.status_code == 200 and answer.json() == {'deleted': 0}
    assert get_file(alice, 'doc', stamp, 'f').content == b'stored'


GIB = 1024 ** 3
CHUNK = 1024 * 1024


def _generated_chunks(total: int, digest) -> iter:
    """``total`` bytes of varied content, made chunk by chunk (never whole in memory), hashed on the way."""
    block = os.urandom(CHUNK)
    for index in range(total // CHUNK):
        chunk = index.to_bytes(8, 'big') + block[8:]
        digest.update(chunk)
        yield chunk


def test_large_file_streams_with_bounded_memory(server, api):
    alice = api('alice')
    stamp = new_stamp()
    sent = hashlib.sha256()
    answer = alice.request('put', f'files/big/{stamp}/huge.bin', data=_generated_chunks(GIB, sent), timeout=600)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {'sha256': sent.hexdigest(), 'size': GIB}
    assert register(alice, 'big', stamp, ['huge.bin']).status_code == 200

    received, size = hashlib.sha256(), 0
    with alice.session.get(alice.server.url + f'files/big/{stamp}/huge.bin', stream=True, timeout=600) as got:
        assert got.status_code == 200
        assert got.headers['Content-Length'] == str(GIB)
        assert got.headers['X-OAIO-SHA256'] == sent.hexdigest()
        for chunk in got.iter_content(CHUNK):
            received.update(chunk)
            size += len(chunk)
    assert size == GIB
    assert received.hexdigest() == sent.hexdigest()

    status = proc_status(server.process.pid)
    print(f"\nserver after 1 GiB in and out: VmHWM {status['VmHWM'].strip()}, VmRSS {status['VmRSS'].strip()}")
    assert kib(status['VmHWM']) < 300 * 1024, status['VmHWM']
    assert stored_blobs(server) == [sent.hexdigest()]
    assert wait_until_empty(server.data / 'tmp') == []
