"""The content engine on the wire (docs/protocol.md, "Chunks and packs"): packs of chunks in and out,
every chunk verified, all or nothing; chunked files in versions, served whole to the original
protocol; possession, not knowledge of a hash, gives access; identical content is stored once."""
from __future__ import annotations

import hashlib
import itertools
import os
import socket

import pytest

from oaio import protocol as p

from oaio_testing import sha

_stamps = itertools.count(1)


def new_stamp() -> str:
    return f'2026120213{next(_stamps):010d}'


def pack(*chunks: bytes, headers: list[tuple[str, int]] | None = None) -> bytes:
    """A pack of ``chunks``, each under its true header unless ``headers`` says otherwise."""
    headers = headers or [(sha(chunk), len(chunk)) for chunk in chunks]
    return b''.join(p.pack_header(digest, size) + chunk for (digest, size), chunk in zip(headers, chunks, strict=True))


def send(session, body: bytes):
    return session.post('chunks/', data=body, headers={'Content-Type': 'application/x-oaio-pack'})


def fetch(session, *hashes: str):
    return session.post('chunks/fetch/', json={'sha256': list(hashes)})


def parse(body: bytes) -> list[tuple[str, bytes]]:
    """The chunks of a pack, checked with the protocol's own parser."""
    parser, chunks, data = p.PackParser(), [], []
    for event in parser.feed(body):
        if event[0] == 'start':
            data = []
        elif event[0] == 'data':
            data.append(event[1])
        else:
            chunks.append((event[1], b''.join(data)))
    parser.close()
    return chunks


def stored_files(server) -> set[str]:
    return {path.name for path in (server.data / 'blobs').rglob('*') if path.is_file()}


def test_a_pack_goes_in_and_comes_back_chunk_for_chunk(api, server):
    alice = api('alice')
    chunks = [os.urandom(size) for size in (1, 1000, 300 * 1024, 4 * p.MiB)] + [b'']
    answer = send(alice, pack(*chunks))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {'received': 5, 'stored': 5}
    assert {sha(chunk) for chunk in chunks} <= stored_files(server)
    assert not list((server.data / 'tmp').iterdir())
    wanted = [sha(chunk) for chunk in reversed(chunks)] + [sha(chunks[1])]      # any order, repeats allowed
    answer = fetch(alice, *wanted)
    assert answer.status_code == 200, answer.text
    assert answer.headers['Content-Type'] == 'application/x-oaio-pack'
    assert parse(answer.content) == [(digest, next(c for c in chunks if sha(c) == digest)) for digest in wanted]
    # the same pack again: verified, nothing new stored
    assert send(alice, pack(*chunks)).json() == {'received': 5, 'stored': 0}


def test_one_forged_chunk_refuses_the_whole_pack(api, server):
    alice = api('alice')
    good, forged = os.urandom(5000), b'not what the header says'
    before = stored_files(server)
    answer = send(alice, pack(good, forged, headers=[(sha(good), len(good)), (sha(b'claimed'), len(forged))]))
    assert answer.status_code == 400, answer.text
    assert answer.json()['sha256'] == sha(forged)
    assert stored_files(server) == before
    assert not list((server.data / 'tmp').iterdir())
    missing = alice.post('blobs/missing/', json={'sha256': [sha(good), sha(b'claimed')]}).json()['missing']
    assert missing == [sha(good), sha(b'claimed')]
    assert 'forged or damaged' in server.log()


@pytest.mark.parametrize('body, detail', [
    (b'0' * 64 + b' 5\nabc', 'ends inside a chunk'),
    (b'nonsense without a newline' * 10, 'malformed chunk header'),
    (b'ABCDEF' + b'0' * 58 + b' 1\nx', 'malformed chunk header'),
    (b'0' * 64 + b' 01\nx', 'malformed chunk header'),
    (p.pack_header('0' * 64, p.MAX_CHUNK_BYTES + 1), 'larger than the limit'),
])
def test_malformed_packs_are_refused(api, server, body, detail):
    alice = api('alice')
    answer = send(alice, body)
    assert answer.status_code == 400, answer.text
    assert detail in answer.json()['detail']
    assert not list((server.data / 'tmp').iterdir())


def test_an_oversized_pack_is_refused_before_its_body_is_read(api, server):
    alice = api('alice')
    alice.get('chunks/')            # no route for GET: only to be sure the CSRF cookie is set
    with socket.create_connection(('127.0.0.1', server.port), timeout=30) as connection:
        token = alice.session.cookies['csrftoken']
        cookies = '; '.join(f'{name}={value}' for name, value in alice.session.cookies.items())
        connection.sendall((f'POST /api/chunks/ HTTP/1.1\r\nHost: {server.host}\r\n'
                            f'Content-Length: {p.MAX_PACK_BYTES + 1}\r\nCookie: {cookies}\r\n'
                            f'X-CSRFToken: {token}\r\nReferer: {server.url}chunks/\r\n\r\n').encode())
        answer = connection.recv(65536).decode(errors='replace')
    assert answer.startswith('HTTP/1.1 413'), answer


def test_packs_need_a_session_and_a_token(server, api):
    import requests
    anonymous = requests.post(server.url + 'chunks/', data=pack(b'x'), timeout=30)
    assert anonymous.status_code == 403, anonymous.text          # no CSRF token
    assert requests.post(server.url + 'chunks/fetch/', json={'sha256': [sha(b'x')]}, timeout=30).status_code == 403


def test_fetching_needs_possession_not_knowledge_of_a_hash(api):
    alice, bob = api('alice'), api('bob')
    secret = b'alice alone has sent this chunk\n'
    assert send(alice, pack(secret)).status_code == 200
    refused = fetch(bob, sha(secret))
    assert refused.status_code == 404 and refused.json()['missing'] == [sha(secret)]
    # in a version of an object shared with bob, bob may read it
    stamp = new_stamp()
    assert alice.post('register/', json={'oaio_id': 'shared', 'client_stamp': stamp,
                                         'client_values': {'_file_paths': ['s.txt']},
                                         'files': {'s.txt': sha(secret)}}).status_code == 200
    assert alice.post('subscribe/', json={'oaio_id': 'shared', 'username': 'bob', 'access_right': 'r'}).ok
    assert parse(fetch(bob, sha(secret)).content) == [(sha(secret), secret)]


def test_identical_content_of_two_users_is_stored_once_and_both_hold_it(api, server):
    alice, bob = api('alice'), api('bob')
    content = os.urandom(70000)
    assert send(alice, pack(content)).json() == {'received': 1, 'stored': 1}
    files = len(stored_files(server))
    assert send(bob, pack(content)).json() == {'received': 1, 'stored': 0}     # bob proved he has the bytes
    assert len(stored_files(server)) == files
    assert bob.post('blobs/missing/', json={'sha256': [sha(content)]}).json()['missing'] == []


def big_file(size: int, seed: bytes) -> tuple[bytes, list]:
    """Content of ``size`` bytes and its chunks as the client cuts them."""
    content = b''.join(hashlib.sha256(seed + index.to_bytes(8, 'big')).digest() for index in range(size // 32 + 1))
    content = content[:size]
    chunks, offset = [], 0
    for length in (p.MiB, 300 * 1024, size - p.MiB - 300 * 1024):
        chunks.append([sha(content[offset:offset + length]), length])
        offset += length
    return content, chunks


def test_a_chunked_file_in_a_version_is_served_whole_to_the_original_protocol(api):
    alice = api('alice')
    content, chunks = big_file(3 * p.MiB, b'chunked')
    pieces, offset = [], 0
    for _, size in chunks:
        pieces.append(content[offset:offset + size])
        offset += size
    assert send(alice, pack(*pieces)).status_code == 200
    stamp = new_stamp()
    entry = {'sha256': sha(content), 'size': len(content), 'chunks': chunks}
    answer = alice.post('register/', json={'oaio_id': 'big', 'client_stamp': stamp,
                                           'client_values': {'_file_paths': ['big.bin', 'small.txt']},
                                           'files': {'big.bin': entry, 'small.txt': sha(pieces[1])}})
    assert answer.status_code == 200, answer.text
    got = alice.get(f'files/big/{stamp}/big.bin')
    assert got.status_code == 200 and got.content == content
    assert got.headers['X-OAIO-SHA256'] == sha(content) and got.headers['Content-Length'] == str(len(content))
    assert alice.get(f'files/big/{stamp}/small.txt').content == pieces[1]
    # the change feed hands the chunk list on
    feed = alice.get('changes/').json()
    assert feed['changes'][0]['files']['big.bin'] == entry


def test_a_chunk_list_must_add_up_and_be_held(api):
    alice, bob = api('alice'), api('bob')
    content, chunks = big_file(2 * p.MiB, b'held')
    offset, pieces = 0, []
    for _, size in chunks:
        pieces.append(content[offset:offset + size])
        offset += size
    assert send(alice, pack(*pieces)).status_code == 200

    def register(session, oaio_id, entry):
        return session.post('register/', json={'oaio_id': oaio_id, 'client_stamp': new_stamp(),
                                                'client_values': {'_file_paths': ['f.bin']}, 'files': {'f.bin': entry}})
    wrong_size = register(alice, 'a', {'sha256': sha(content), 'size': len(content) + 1, 'chunks': chunks})
    assert wrong_size.status_code == 400 and 'add up' in wrong_size.json()['detail']
    not_held = register(bob, 'b', {'sha256': sha(content), 'size': len(content), 'chunks': chunks})
    assert not_held.status_code == 400 and not_held.json()['missing'] == ['f.bin']
    bad_size = [[chunks[0][0], chunks[0][1] + 1], [chunks[1][0], chunks[1][1] - 1], chunks[2]]
    lying = register(alice, 'c', {'sha256': sha(content), 'size': len(content), 'chunks': bad_size})
    assert lying.status_code == 400 and lying.json()['missing'] == ['f.bin']
    assert register(alice, 'd', {'sha256': sha(content), 'size': len(content), 'chunks': chunks}).status_code == 200


def database_rows(server, query: str, *args) -> list:
    """Rows of a read-only query on the server's database (SQLite or the test's PostgreSQL)."""
    database_url = server.env.get('DATABASE_URL')
    if database_url:
        import psycopg
        with psycopg.connect(database_url) as connection:
            return connection.execute(query, args).fetchall()
    import sqlite3
    connection = sqlite3.connect(f'file:{server.data / "db.sqlite3"}?mode=ro', uri=True)
    try:
        return connection.execute(query.replace('%s', '?'), args).fetchall()
    finally:
        connection.close()


def test_a_one_file_edit_stores_what_changed_not_the_object(api, server):
    """Versions are runs of file rows: an edit of one file of 2,000 writes two rows and values
    without the path list, and every version still answers its full file list and its files."""
    alice = api('alice')
    contents = {f'dir{index % 40}/file{index}.txt': f'file {index}\n'.encode() for index in range(2000)}
    assert send(alice, pack(*set(contents.values()))).status_code == 200
    first = new_stamp()
    files = {path: sha(content) for path, content in contents.items()}
    answer = alice.post('register/', json={'oaio_id': 'many', 'client_stamp': first,
                                           'client_values': {'_file_paths': sorted(files), 'k': 1}, 'files': files})
    assert answer.status_code == 200, answer.text
    rows_before = database_rows(server, 'SELECT count(*) FROM oaio_filerow')[0][0]
    assert rows_before == 2000
    edited = b'edited\n'
    assert send(alice, pack(edited)).status_code == 200
    second = new_stamp()
    answer = alice.post('upload/', json={'oaio_id': 'many', 'client_stamp': second, 'server_stamp': first,
                                         'client_values': {'_file_paths': sorted(files), 'k': 2},
                                         'files': {**files, 'dir7/file7.txt': sha(edited)}})
    assert answer.status_code == 200, answer.text
    assert answer.json()['client_values']['_file_paths'] == sorted(files)
    assert database_rows(server, 'SELECT count(*) FROM oaio_filerow')[0][0] == rows_before + 1
    values = database_rows(server, 'SELECT v."values" FROM oaio_version v WHERE v.stamp = %s', second)[0][0]
    assert len(values if isinstance(values, str) else str(values)) < 100, values      # no path list stored
    # both versions answer in full: their files and their path lists
    assert alice.get(f'files/many/{first}/dir7/file7.txt').content == contents['dir7/file7.txt']
    assert alice.get(f'files/many/{second}/dir7/file7.txt').content == edited
    assert alice.get(f'files/many/{second}/dir8/file8.txt').content == contents['dir8/file8.txt']
    head = next(obj for obj in alice.get('oaio_stampz/').json() if obj['oaio_id'] == 'many')
    assert head['client_values'] == {'_file_paths': sorted(files), 'k': 2}
    # a removed file ends its run; the older version still has it
    third = new_stamp()
    rest = {path: digest for path, digest in files.items() if path != 'dir9/file9.txt'}
    assert alice.post('upload/', json={'oaio_id': 'many', 'client_stamp': third, 'server_stamp': second,
                                       'client_values': {'_file_paths': sorted(rest)},
                                       'files': {**rest, 'dir7/file7.txt': sha(edited)}}).status_code == 200
    assert alice.get(f'files/many/{third}/dir9/file9.txt').status_code == 404
    assert alice.get(f'files/many/{second}/dir9/file9.txt').content == contents['dir9/file9.txt']
    assert database_rows(server, 'SELECT count(*) FROM oaio_filerow')[0][0] == rows_before + 1


def test_versions_travel_as_deltas_both_ways(api):
    """A client that sends files_delta and reads the feed with files=delta exchanges what changed,
    not the object: the upload body, its answer and the feed entry stay small for 2,000 files."""
    alice = api('alice')
    contents = {f'd{index % 20}/f{index}.txt': f'{index}\n'.encode() for index in range(2000)}
    assert send(alice, pack(*set(contents.values()))).status_code == 200
    first = new_stamp()
    answer = alice.post('register/', json={'oaio_id': 'tree', 'client_stamp': first, 'client_values': {'k': 1},
                                           'files_delta': {path: sha(c) for path, c in contents.items()}})
    assert answer.status_code == 200, answer.text
    assert '_file_paths' not in answer.json()['client_values']
    cursor = alice.get('changes/', params={'files': 'delta'}).json()['cursor']
    edited = b'edited\n'
    assert send(alice, pack(edited)).status_code == 200
    second = new_stamp()
    body = {'oaio_id': 'tree', 'client_stamp': second, 'server_stamp': first, 'client_values': {'k': 2},
            'files_delta': {'d1/f1.txt': sha(edited), 'd2/f2.txt': None, 'new/one.txt': sha(edited)}}
    answer = alice.post('upload/', json=body)
    assert answer.status_code == 200, answer.text
    assert len(answer.content) < 1000, len(answer.content)
    feed = alice.get('changes/', params={'since': cursor, 'files': 'delta'})
    entry = feed.json()['changes'][0]
    assert len(feed.content) < 2000, len(feed.content)
    assert entry['files_base'] == first and entry['file_paths'] is True
    assert entry['files_delta'] == {'d1/f1.txt': {'sha256': sha(edited), 'size': len(edited)}, 'd2/f2.txt': None,
                                    'new/one.txt': {'sha256': sha(edited), 'size': len(edited)}}
    assert entry['oaio']['client_values'] == {'k': 2}
    # the original protocol sees the whole version, _file_paths derived
    expected = sorted(set(contents) - {'d2/f2.txt'} | {'new/one.txt'})
    head = next(obj for obj in alice.get('oaio_stampz/').json() if obj['oaio_id'] == 'tree')
    assert head['client_values'] == {'k': 2, '_file_paths': expected}
    whole = alice.get(f'manifest/tree/{second}').json()
    assert sorted(whole['files']) == expected and whole['file_paths'] is True
    assert alice.get(f'files/tree/{second}/d1/f1.txt').content == edited
    assert alice.get(f'files/tree/{second}/d3/f3.txt').content == contents['d3/f3.txt']
    # a delta may not name content the caller does not hold, nor list _file_paths itself
    third = new_stamp()
    refused = alice.post('upload/', json={**body, 'client_stamp': third, 'server_stamp': second,
                                          'files_delta': {'x.txt': sha(b'never sent')}})
    assert refused.status_code == 400 and refused.json()['missing'] == ['x.txt']
    refused = alice.post('upload/', json={**body, 'client_stamp': third, 'server_stamp': second,
                                          'client_values': {'_file_paths': []}})
    assert refused.status_code == 400 and 'derives it' in refused.json()['detail']
    assert alice.get('changes/', params={'files': 'sideways'}).status_code == 400
