"""Attacks on the server found by probing it as a hostile user would (docs/reliability.md,
"Security"): content by hash, a stranger filling the disk, staged files of other users, huge
manifests. Each test failed before its fix."""
from __future__ import annotations

import itertools
import json
import shutil
import socket
from urllib.parse import quote

import pytest

from oaio import protocol as p

from oaio_testing import sha, wait_for

_stamps = itertools.count(1)


def new_stamp() -> str:
    return f'2026120207{next(_stamps):010d}'


def put(session, oaio_id: str, stamp: str, path: str, content: bytes):
    return session.request('put', f'files/{quote(oaio_id)}/{stamp}/{quote(path)}', data=content)


def register(session, oaio_id: str, stamp: str, files: dict):
    return session.post('register/', json={'oaio_id': oaio_id, 'client_stamp': stamp,
                                           'client_values': {'_file_paths': sorted(files)}, 'files': files})


def missing(session, *hashes: str) -> list:
    answer = session.post('blobs/missing/', json={'sha256': list(hashes)})
    assert answer.status_code == 200, answer.text
    return answer.json()['missing']


def tree_bytes(directory) -> int:
    return sum(path.stat().st_size for path in directory.rglob('*') if path.is_file())


# -- 1. knowing a hash does not give the content -------------------------------------------------------

SECRET = b"alice's secret: the launch code is 0000\n"


@pytest.fixture
def alice_with_a_secret(api):
    alice = api('alice')
    stamp = new_stamp()
    assert put(alice, 'vault', stamp, 'secret.txt', SECRET).status_code == 201
    answer = register(alice, 'vault', stamp, {'secret.txt': sha(SECRET)})
    assert answer.status_code == 200, answer.text
    return alice, stamp


def test_hash_alone_neither_confirms_nor_reads_content(alice_with_a_secret, api):
    """Dropship: bob knows the sha256 of alice's file; the server must treat it as unknown content."""
    alice, _ = alice_with_a_secret
    bob = api('bob')
    assert missing(bob, sha(SECRET)) == [sha(SECRET)]               # no existence oracle
    assert missing(bob, sha(b'never stored')) == [sha(b'never stored')]
    stamp = new_stamp()
    answer = register(bob, 'loot', stamp, {'x.txt': sha(SECRET)})
    assert answer.status_code == 400, answer.text                   # as for content nobody stored
    assert answer.json()['missing'] == ['x.txt']
    assert bob.get(f'files/loot/{stamp}/x.txt').status_code == 404
    # an object of his own, then an upload naming the hash: refused the same way
    assert register(bob, 'loot', stamp, {}).status_code == 200
    answer = bob.post('upload/', json={'oaio_id': 'loot', 'client_stamp': new_stamp(), 'server_stamp': stamp,
                                       'client_values': {'_file_paths': ['x.txt']}, 'files': {'x.txt': sha(SECRET)}})
    assert answer.status_code == 400 and answer.json()['missing'] == ['x.txt'], answer.text
    assert missing(alice, sha(SECRET)) == []                        # the owner holds it


def test_sending_the_bytes_works_and_stores_one_copy(alice_with_a_secret, api, server):
    bob = api('bob')
    stamp = new_stamp()
    assert put(bob, 'mine', stamp, 'same.txt', SECRET).status_code == 201
    assert register(bob, 'mine', stamp, {'same.txt': sha(SECRET)}).status_code == 200
    assert bob.get(f'files/mine/{stamp}/same.txt').content == SECRET
    stored = [path for path in (server.data / 'blobs').rglob('*') if path.is_file()]
    assert [path.name for path in stored] == [sha(SECRET)]          # dedup still saves the storage
    # having sent it once, bob may name it again anywhere without sending it again
    assert missing(bob, sha(SECRET)) == []
    assert register(bob, 'again', new_stamp(), {'copy.txt': sha(SECRET)}).status_code == 200


def test_a_reader_may_name_content_he_can_read_until_he_loses_access(alice_with_a_secret, api):
    alice, _ = alice_with_a_secret
    bob = api('bob')
    share = alice.post('subscribe/', json={'oaio_id': 'vault', 'username': 'bob', 'access_right': 'r'})
    assert share.status_code == 200, share.text
    assert missing(bob, sha(SECRET)) == []          # he can read it: copying it needs no upload
    assert register(bob, 'copy', new_stamp(), {'c.txt': sha(SECRET)}).status_code == 200
    unshare = alice.post('subscribe/', json={'oaio_id': 'vault', 'username': 'bob', 'access_right': 'x'})
    assert unshare.status_code == 200, unshare.text
    # his own object 'copy' still holds it; a third object of someone who never had it cannot
    carol = api('carol')
    assert missing(carol, sha(SECRET)) == [sha(SECRET)]
    assert bob.post('delete/', json={'oaio_id': 'copy'}).status_code == 200
    assert missing(bob, sha(SECRET)) == [sha(SECRET)]                # access lost: the hash is worth nothing
    answer = register(bob, 'later', new_stamp(), {'c.txt': sha(SECRET)})
    assert answer.status_code == 400 and answer.json()['missing'] == ['c.txt'], answer.text


def test_staged_files_of_other_users_name_nothing(alice_with_a_secret, api):
    """The original protocol stages by PUT; another user's staged file at the same address is not yours."""
    alice, _ = alice_with_a_secret
    bob = api('bob')
    stamp = new_stamp()
    assert put(alice, 'shared-id', stamp, 'a.txt', b'alice staged this').status_code == 201
    answer = bob.post('register/', json={'oaio_id': 'shared-id', 'client_stamp': stamp,
                                         'client_values': {'_file_paths': ['a.txt']}})
    assert answer.status_code == 400 and answer.json()['missing'] == ['a.txt'], answer.text


# -- 2. no stranger fills the disk ----------------------------------------------------------------------

def _raw_request(server, head: str, body: bytes = b'') -> socket.socket:
    sock = socket.create_connection(('127.0.0.1', server.port), timeout=10)
    sock.sendall(head.encode() + b'\r\n' + body)
    return sock


def _answer_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b'\r\n\r\n')
    length = next((int(line.split(b':')[1]) for line in head.lower().split(b'\r\n')
                   if line.startswith(b'content-length:')), 0)
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    status = int(data.split(b' ', 2)[1]) if data.startswith(b'HTTP/') else 0
    return status, head + b'\r\n\r\n' + body


@pytest.mark.parametrize('slug', ['api/register/', 'api/login/', 'admin/login/', 'api/nope/'])
def test_huge_anonymous_body_is_refused_before_it_is_read(server, slug):
    before = shutil.disk_usage(server.data).used
    sock = _raw_request(server, f'POST /{slug} HTTP/1.1\r\nHost: {server.host}\r\nContent-Type: application/json\r\n'
                                f'Content-Length: {512 * 1024 ** 2}\r\n', b'{"filler": "' + b'x' * 65536)
    try:
        status, answer = _answer_status(sock)      # arrives with 511.9 MiB still unsent
    finally:
        sock.close()
    assert status == 413, answer
    assert b'"too_large"' in answer
    assert shutil.disk_usage(server.data).used - before < 16 * 1024 ** 2
    assert not (server.data / 'tmp').exists() or tree_bytes(server.data / 'tmp') == 0


def test_chunked_anonymous_body_is_refused_before_it_is_read(server):
    sock = _raw_request(server, f'POST /api/register/ HTTP/1.1\r\nHost: {server.host}\r\n'
                                'Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n',
                        b'10000\r\n' + b'x' * 65536 + b'\r\n')
    try:
        status, answer = _answer_status(sock)
    finally:
        sock.close()
    assert status == 403 and b'"csrf"' in answer, answer    # no token, no session: refused before the body


def test_anonymous_file_put_is_refused_before_it_is_read(server):
    stamp = new_stamp()
    sock = _raw_request(server, f'PUT /api/files/planted/{stamp}/big.bin HTTP/1.1\r\nHost: {server.host}\r\n'
                                f'Content-Length: {512 * 1024 ** 2}\r\n', b'x' * 65536)
    try:
        status, answer = _answer_status(sock)
    finally:
        sock.close()
    assert status == 403, answer        # no CSRF token: refused as Django refuses it, before the body
    assert not (server.data / 'tmp').exists() or tree_bytes(server.data / 'tmp') == 0


def _held_back_put(alice, server, path: str, size: int) -> socket.socket:
    """Send a PUT of ``size`` bytes but its last one, as alice (session and CSRF token)."""
    alice._token_headers('current_stamp/')
    cookies = '; '.join(f'{name}={value}' for name, value in alice.session.cookies.items())
    head = (f'PUT /api/files/held/{new_stamp()}/{path} HTTP/1.1\r\nHost: {server.host}\r\nCookie: {cookies}\r\n'
            f'X-CSRFToken: {alice.session.cookies["csrftoken"]}\r\nReferer: {server.url}\r\n'
            f'Content-Length: {size}\r\n')
    return _raw_request(server, head, b'y' * (size - 1))


def test_an_upload_is_spooled_once_and_uploads_per_user_are_bounded(server, api):
    server.stop()
    server.env['OAIO_MAX_UPLOADS_PER_USER'] = '2'
    server.start()
    alice, bob = api('alice'), api('bob')
    size = 8 * 1024 ** 2
    held = [_held_back_put(alice, server, f'f{number}.bin', size) for number in range(2)]
    try:
        # both bodies are in the blob spool, once each: nothing else on the disk holds them
        # (the server writes what arrived in steps of a MiB)
        wait_for(lambda: tree_bytes(server.data / 'tmp') >= 2 * (size - 1024 ** 2), what='both bodies spooled')
        assert tree_bytes(server.data / 'tmp') < 2 * size
        third = put(alice, 'held', new_stamp(), 'third.bin', b'z' * 1000)
        assert third.status_code == 429, third.text
        assert third.headers['Retry-After'] == '1'
        assert put(bob, 'bobs', new_stamp(), 'b.bin', b'bob is not throttled').status_code == 201
        for sock in held:
            sock.sendall(b'y')
            status, answer = _answer_status(sock)
            assert status == 201, answer
    finally:
        for sock in held:
            sock.close()
    assert put(alice, 'held', new_stamp(), 'third.bin', b'z' * 1000).status_code == 201
    wait_for(lambda: tree_bytes(server.data / 'tmp') == 0, what='no spool left')


def test_an_upload_cut_off_leaves_no_spool(server, api):
    alice = api('alice')
    sock = _held_back_put(alice, server, 'cut.bin', 4 * 1024 ** 2)
    wait_for(lambda: tree_bytes(server.data / 'tmp') > 0, what='the body spooled')
    sock.close()
    wait_for(lambda: not any((server.data / 'tmp').iterdir()), what='the spool removed')
    blobs = server.data / 'blobs'
    assert not blobs.exists() or tree_bytes(blobs) == 0       # nothing of the cut-off body was kept


# -- 5. smaller ones ------------------------------------------------------------------------------------

def test_deleting_an_object_leaves_other_users_staged_files(api):
    alice, bob = api('alice'), api('bob')
    stamp = new_stamp()
    assert register(alice, 'contested', stamp, {}).status_code == 200
    # bob stages for an id before it exists; alice registers and deletes another object with that stamp
    later = new_stamp()
    assert put(bob, 'future', later, 'b.txt', b'bob staged this').status_code == 201
    assert register(alice, 'future', later, {}).status_code == 200        # same id and stamp: alice's version
    assert alice.post('delete/', json={'oaio_id': 'future'}).status_code == 200
    answer = bob.post('register/', json={'oaio_id': 'future', 'client_stamp': later,
                                         'client_values': {'_file_paths': ['b.txt']}})
    assert answer.status_code == 200, answer.text                          # his staged file survived both
    assert bob.get(f'files/future/{later}/b.txt').content == b'bob staged this'


@pytest.mark.parametrize('count, detail', [
    (100_000, 'files of this version are not stored yet; upload them first'),
    (300_000, '_file_paths lists 300000 paths, the limit is 100000 per object'),
])
def test_huge_file_lists_are_refused_without_a_server_error(api, server, count, detail):
    alice = api('alice')
    body = {'oaio_id': f'huge{count}', 'client_stamp': new_stamp(),
            'client_values': {'_file_paths': [f'{number:x}' for number in range(count)]}}
    data = json.dumps(body).encode()
    assert len(data) < 4 * 1024 ** 2 < p.MAX_REQUEST_BODY_BYTES     # a body any logged-in client may send
    answer = alice.post('register/', data=data, headers={'Content-Type': 'application/json'}, timeout=120)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.json()['detail'] == detail
