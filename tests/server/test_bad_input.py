"""Bad input against a live server: each gets a 4xx with a JSON ``{"error", "detail"}`` body that
says what is wrong, nothing is half-stored, and the server keeps serving (no 500: the server
fixtures fail the test if the server logs an error or a traceback).

Most cases share one server per module (``shared_api``): alice owns the object ``kept`` with the
file ``a.txt``, and every refused request must leave her listing, her change feed cursor and the
subscriptions of ``kept`` exactly as they were.
"""
import contextlib
import hashlib
import itertools
import json
from urllib.parse import quote

import pytest

from oaio import protocol as p

STAMP, STAMP2 = '20261125101010123456', '20261125101010223456'
KEPT = 'kept'
KEPT_CONTENT = b'kept content'
CODES = {400: 'invalid', 401: 'not_authenticated', 403: 'forbidden', 404: 'not_found', 405: 'method_not_allowed',
         409: 'conflict', 413: 'too_large'}
MAX_JSON_BYTES = p.MAX_REQUEST_BODY_BYTES
_numbers = itertools.count(1)


def assert_refused(answer, status: int, error: str = '') -> dict:
    """The answer is ``status`` with a JSON error body; returns the body."""
    assert answer.status_code == status, answer.text
    assert answer.headers['Content-Type'] == 'application/json'
    body = answer.json()
    assert isinstance(body, dict), body
    assert body['error'] == (error or CODES[status])
    assert isinstance(body['detail'], str) and body['detail']
    return body


def listed(session) -> dict:
    answer = session.get('oaio_stampz/')
    assert answer.status_code == 200, answer.text
    return {obj['oaio_id']: obj for obj in answer.json()}


def state(session) -> tuple:
    """Everything of alice's a bad request could have changed."""
    cursor = session.get('changes/')
    assert cursor.status_code == 200, cursor.text
    subs = session.get(f'user_subz/{KEPT}')
    return listed(session), cursor.json()['cursor'], subs.json()


@contextlib.contextmanager
def unchanged(session):
    before = state(session)
    yield
    assert state(session) == before


@pytest.fixture
def alice(shared_api):
    """alice, owner of ``kept`` (with a.txt, shared with bob as U), logged in on the module's server."""
    session = shared_api('alice')
    shared_api('bob')
    if KEPT not in listed(session):
        assert session.request('put', f'files/{KEPT}/{STAMP}/a.txt', data=KEPT_CONTENT).status_code == 201
        registered = session.post('register/', json={'oaio_id': KEPT, 'client_stamp': STAMP,
                                                     'client_values': {'_file_paths': ['a.txt'], 'v': 1}})
        assert registered.status_code == 200, registered.text
        assert session.post('subscribe/', json={'oaio_id': KEPT, 'username': 'bob', 'access_right': 'U'}).ok
    return session


def register_body(oaio_id: str = '', **fields) -> dict:
    return {'oaio_id': oaio_id or f'new-{next(_numbers)}', 'client_stamp': STAMP, 'client_values': {}, **fields}


def upload_body(**fields) -> dict:
    return {'oaio_id': KEPT, 'client_stamp': STAMP2, 'server_stamp': STAMP,
            'client_values': {'_file_paths': ['a.txt'], 'v': 2}, **fields}


def without(body: dict, key: str) -> dict:
    return {name: value for name, value in body.items() if name != key}


# -- the body: JSON, an object ------------------------------------------------------------------------------

POST_ENDPOINTS = ('login/', 'register/', 'upload/', 'delete/', 'subscribe/', 'wipe_user/', 'blobs/missing/')
BAD_BODIES = {
    'truncated': (b'{"oaio_id": "x", ', 'request body is not valid JSON'),
    'not-utf8': (b'{"oaio_id": "\xff\xfe"}', 'request body is not valid JSON'),
    'trailing-garbage': (b'{} {}', 'request body is not valid JSON'),
    'single-quotes': (b"{'oaio_id': 'x'}", 'request body is not valid JSON'),
    'empty': (b'', 'request body must be a JSON object'),
    'null': (b'null', 'request body must be a JSON object'),
    'array': (b'[{"oaio_id": "x"}]', 'request body must be a JSON object'),
    'string': (b'"x"', 'request body must be a JSON object'),
    'number': (b'5', 'request body must be a JSON object'),
    'deeply-nested': (b'[' * 100_000 + b']' * 100_000, 'request body is not valid JSON'),
}


@pytest.mark.parametrize('bad', list(BAD_BODIES))
@pytest.mark.parametrize('slug', POST_ENDPOINTS)
def test_body_that_is_no_json_object(alice, slug, bad):
    data, detail = BAD_BODIES[bad]
    with unchanged(alice):
        answer = alice.post(slug, data=data, headers={'Content-Type': 'application/json'})
        assert assert_refused(answer, 400)['detail'].startswith(detail)


# -- missing fields and wrong types -----------------------------------------------------------------------

SHA = hashlib.sha256(b'nothing').hexdigest()
FIELD_CASES = [
    ('login/', {}, 'login needs "username" and "password" strings'),
    ('login/', {'username': 'alice'}, 'login needs "username" and "password" strings'),
    ('login/', {'username': ['alice'], 'password': 'secret'}, 'login needs "username" and "password" strings'),
    ('login/', {'username': 'alice', 'password': None}, 'login needs "username" and "password" strings'),
    ('register/', {}, 'oaio_id must be a non-empty string'),
    ('register/', without(register_body('r1'), 'oaio_id'), 'oaio_id must be a non-empty string'),
    ('register/', without(register_body('r2'), 'client_stamp'), 'client_stamp must be 20 digits'),
    ('register/', register_body() | {'oaio_id': 5}, 'oaio_id must be a non-empty string'),
    ('register/', register_body('r3', client_stamp=int(STAMP)), 'client_stamp must be 20 digits'),
    ('register/', register_body('r4', client_values=[]), 'values must be a JSON object'),
    ('register/', register_body('r5', client_values='v'), 'values must be a JSON object'),
    ('register/', register_body('r6', client_values=None), 'values must be a JSON object'),
    ('register/', register_body('r7', client_values={'_name': 5}), '_name must be a string'),
    ('register/', register_body('r8', client_values={'_root_path': ['x']}), '_root_path must be a string'),
    ('register/', register_body('r9', csh_id=5), 'csh_id must be a non-empty string'),
    ('register/', register_body('r10', csh_id='a/b'), "csh_id must not contain '/'"),
    ('register/', register_body('r11', csh_id='x' * 65), 'csh_id is longer than 64 characters'),
    ('register/', register_body('r12', files='a.txt'), '"files" must map paths listed in _file_paths'),
    ('register/', register_body('r13', files={'b.txt': SHA}), '"files" must map paths listed in _file_paths'),
    ('register/', register_body('r14', client_values={'_file_paths': ['a.txt']}, files={'a.txt': 'nothex'}),
     'sha256 must be 64 lowercase hex digits'),
    ('register/', register_body('r15', client_values={'_file_paths': ['a.txt']}, files={'a.txt': SHA.upper()}),
     'sha256 must be 64 lowercase hex digits'),
    ('upload/', {}, 'oaio_id must be a non-empty string'),
    ('upload/', without(upload_body(), 'client_stamp'), 'client_stamp must be 20 digits'),
    ('upload/', without(upload_body(), 'server_stamp'), 'server_stamp must be 20 digits'),
    ('upload/', upload_body(server_stamp=int(STAMP)), 'server_stamp must be 20 digits'),
    ('upload/', upload_body(server_stamp=None), 'server_stamp must be 20 digits'),
    ('upload/', upload_body(client_values=[1]), 'values must be a JSON object'),
    ('upload/', upload_body(client_values={'_file_paths': 'a.txt'}), '_file_paths must be a list'),
    ('delete/', {}, 'oaio_id must be a non-empty string'),
    ('delete/', {'oaio_id': [KEPT]}, 'oaio_id must be a non-empty string'),
    ('subscribe/', {'oaio_id': KEPT, 'access_right': 'r'}, 'username must be a non-empty string'),
    ('subscribe/', {'oaio_id': KEPT, 'username': 5, 'access_right': 'r'}, 'username must be a non-empty string'),
    ('subscribe/', {'oaio_id': KEPT, 'username': '', 'access_right': 'r'}, 'username must be a non-empty string'),
    ('subscribe/', {'oaio_id': KEPT, 'username': 'bob'}, 'access right must be one of'),
    ('subscribe/', {'oaio_id': KEPT, 'username': 'bob', 'access_right': 'Z'}, 'access right must be one of'),
    ('subscribe/', {'oaio_id': KEPT, 'username': 'bob', 'access_right': 'c'}, 'access right must be one of'),
    ('subscribe/', {'oaio_id': KEPT, 'username': 'bob', 'access_right': 'rU'}, 'access right must be one of'),
    ('subscribe/', {'oaio_id': KEPT, 'username': 'bob', 'access_right': ['r']}, 'access right must be one of'),
    ('subscribe/', {'username': 'bob', 'access_right': 'r'}, 'oaio_id must be a non-empty string'),
    ('wipe_user/', {}, 'Uid must be a non-empty user name'),
    ('wipe_user/', {'Uid': ''}, 'Uid must be a non-empty user name'),
    ('wipe_user/', {'Uid': ['alice']}, 'Uid must be a non-empty user name'),
    ('blobs/missing/', {}, '"sha256" must be a list of at most 10000 hashes'),
    ('blobs/missing/', {'sha256': SHA}, '"sha256" must be a list of at most 10000 hashes'),
    ('blobs/missing/', {'sha256': [SHA] * 10001}, '"sha256" must be a list of at most 10000 hashes'),
    ('blobs/missing/', {'sha256': [5]}, 'sha256 must be 64 lowercase hex digits'),
    ('blobs/missing/', {'sha256': [SHA[:-1]]}, 'sha256 must be 64 lowercase hex digits'),
]


@pytest.mark.parametrize('slug, body, detail', FIELD_CASES)
def test_missing_field_or_wrong_type(alice, slug, body, detail):
    with unchanged(alice):
        assert assert_refused(alice.post(slug, json=body), 400)['detail'].startswith(detail)


# -- values that neither database can store ------------------------------------------------------------------

BAD_VALUES = {
    'nan': b'{"n": NaN}',
    'infinity': b'{"n": -Infinity}',
    'overflowing-float': b'{"n": 1e400}',
    'nul-in-value': b'{"k": "a\\u0000b"}',
    'nul-in-key': b'{"a\\u0000": 1}',
    'nul-nested': b'{"k": [{"deeper": ["\\u0000"]}]}',
    'lone-surrogate': b'{"k": "\\ud800"}',
    'lone-surrogate-key': b'{"\\udfff": 1}',
    'huge-integer': b'{"n": 1' + b'0' * 5000 + b'}',
}


@pytest.mark.parametrize('slug', ['register/', 'upload/'])
@pytest.mark.parametrize('bad', list(BAD_VALUES))
def test_values_that_cannot_be_stored(alice, slug, bad):
    body = json.dumps(register_body() if slug == 'register/' else upload_body())
    data = body.replace('"client_values": {}', '"client_values": ' + BAD_VALUES[bad].decode())
    if slug == 'upload/':
        data = body.replace('"client_values": {"_file_paths": ["a.txt"], "v": 2}',
                            '"client_values": ' + BAD_VALUES[bad].decode())
    assert data != body
    with unchanged(alice):
        assert_refused(alice.post(slug, data=data.encode(), headers={'Content-Type': 'application/json'}), 400)


@pytest.mark.parametrize('depth, status', [
    (100, 200),
    (101, 400),
    (935, 400),         # parses, but storing it once overflowed the stack: a 500
    (5000, 400),        # does not parse
])
def test_nesting_of_values(alice, depth, status):
    oaio_id = f'nested-{depth}'
    nested = '[' * (depth - 1) + ']' * (depth - 1)           # in the values object: depth levels in all
    data = json.dumps(register_body(oaio_id)).replace('"client_values": {}', '"client_values": {"k": ' + nested + '}')
    with unchanged(alice) if status != 200 else contextlib.nullcontext():
        answer = alice.post('register/', data=data.encode(), headers={'Content-Type': 'application/json'})
        if status != 200:
            assert_refused(answer, status)
            return
    assert answer.status_code == 200, answer.text
    assert listed(alice)[oaio_id]['client_values'] == json.loads('{"k": ' + nested + '}')


# -- ids --------------------------------------------------------------------------------------------------

BAD_IDS = {
    'slash': 'a/b',
    'backslash': 'a\\b',
    'dot': '.',
    'dotdot': '..',
    'nul': 'a\x00b',
    'control': 'a\x01b',
    'newline': 'a\nb',
    'del': 'a\x7fb',
    'c1-control': 'a\x85b',
    'too-long': 'é' * 128,              # 256 bytes of UTF-8
    'empty': '',
}


def url_part(text: str) -> str:
    """Percent-encode everything, dots too, so that no client library normalizes ``..`` away."""
    return quote(text, safe='').replace('.', '%2E')


@pytest.mark.parametrize('bad', list(BAD_IDS))
@pytest.mark.parametrize('where', ['register', 'upload', 'delete', 'subscribe', 'files_put', 'files_get',
                                   'files_delete'])
def test_invalid_id(alice, where, bad):
    oaio_id = BAD_IDS[bad]
    sends = {
        'register': lambda: alice.post('register/', json=register_body() | {'oaio_id': oaio_id}),
        'upload': lambda: alice.post('upload/', json=upload_body(oaio_id=oaio_id)),
        'delete': lambda: alice.post('delete/', json={'oaio_id': oaio_id}),
        'subscribe': lambda: alice.post('subscribe/', json={'oaio_id': oaio_id, 'username': 'bob',
                                                            'access_right': 'r'}),
        'files_put': lambda: alice.request('put', f'files/{url_part(oaio_id)}/{STAMP}/a.txt', data=b'x'),
        'files_get': lambda: alice.get(f'files/{url_part(oaio_id)}/{STAMP}/a.txt'),
        'files_delete': lambda: alice.request('delete', f'files/{url_part(oaio_id)}/{STAMP}/a.txt'),
    }
    with unchanged(alice):
        answer = sends[where]()
        if where.startswith('files') and bad == 'empty':
            assert_refused(answer, 404)                 # files//STAMP/a.txt names no endpoint
        else:
            assert_refused(answer, 400)


def test_longest_valid_id_is_accepted(alice):
    oaio_id = 'é' * 127 + 'x'                           # 255 bytes of UTF-8
    answer = alice.post('register/', json=register_body(oaio_id))
    assert answer.status_code == 200, answer.text
    assert answer.json()['oaio_id'] == oaio_id


@pytest.mark.parametrize('oaio_id', ['a\x00b', 'a/b', '..', 'é' * 200, ''])
def test_user_subz_of_an_invalid_id_is_an_unknown_id(alice, oaio_id):
    """The original client asks user_subz/ with an empty id for the list of all users."""
    with unchanged(alice):
        answer = alice.get(f'user_subz/{url_part(oaio_id)}')
    if '/' in oaio_id:
        assert_refused(answer, 404)                     # user_subz/a/b names no endpoint
        return
    assert answer.status_code == 200, answer.text
    assert answer.json() == alice.get('user_subz/no-such-object').json()
    assert {'alice', 'bob'} <= {row['username'] for row in answer.json()}


# -- stamps -----------------------------------------------------------------------------------------------

BAD_STAMPS = {
    'short': '2026112510101012345',
    'long': '202611251010101234567',
    'letter': '2026112510101012345a',
    'letters': 'abcdefghijklmnopqrst',
    'spaces': ' 2026112510101012345',
    'newline': '20261125101010123456\n',
    'too-old': '20221231111111012344',
    'much-too-old': '19700101000000000000',
    'month-13': '20261325101010123456',
    'month-0': '20260025101010123456',
    'day-32': '20261132101010123456',
    'feb-30': '20260230101010123456',
    'hour-24': '20261125241010123456',
    'minute-60': '20261125106010123456',
    'fullwidth-digits': '２０２６１１２５１０１０１０１２３４５６',
    'arabic-indic-digits': '٢٠٢٦١١٢٥١٠١٠١٠١٢٣٤٥٦',
    'number': int(STAMP),
    'null': None,
    'empty': '',
}


@pytest.mark.parametrize('where, bad', [
    (where, bad) for where in ('register', 'upload_client_stamp', 'upload_server_stamp', 'files_put')
    for bad, stamp in BAD_STAMPS.items() if where != 'files_put' or (isinstance(stamp, str) and stamp)])
def test_invalid_stamp(alice, where, bad):
    stamp = BAD_STAMPS[bad]
    with unchanged(alice):
        if where == 'register':
            answer = alice.post('register/', json=register_body(client_stamp=stamp))
        elif where == 'upload_client_stamp':
            answer = alice.post('upload/', json=upload_body(client_stamp=stamp))
        elif where == 'upload_server_stamp':
            answer = alice.post('upload/', json=upload_body(server_stamp=stamp))
        else:
            answer = alice.request('put', f'files/new/{url_part(stamp)}/a.txt', data=b'x')
        body = assert_refused(answer, 400)
        assert 'stamp' in body['detail']


def test_oldest_valid_stamp_is_accepted(alice):
    answer = alice.post('register/', json=register_body('oldest', client_stamp='20221231111111012345'))
    assert answer.status_code == 200, answer.text


# -- file paths -------------------------------------------------------------------------------------------

BAD_PATHS = {
    'absolute': ['/etc/passwd'],
    'dotdot': ['../escape.txt'],
    'dotdot-inside': ['a/../../escape.txt'],
    'dotdot-alone': ['..'],
    'dot': ['./a.txt'],
    'empty-component': ['a//b.txt'],
    'trailing-slash': ['a/'],
    'empty': [''],
    'nul': ['a\x00.txt'],
    'control': ['a\x1b.txt'],
    'backslash': ['a\\..\\b.txt'],
    'long-component': ['x' * 256],
    'long-path': ['a/' * 2048 + 'a'],
    'not-a-list': 'a.txt',
    'a-dict': {'a.txt': 1},
    'not-strings': [5],
    'nested-list': [['a.txt']],
    'duplicates': ['a.txt', 'a.txt'],
    'null': None,
}


@pytest.mark.parametrize('bad', list(BAD_PATHS))
@pytest.mark.parametrize('slug', ['register/', 'upload/'])
def test_invalid_file_paths(alice, slug, bad):
    values = {'_file_paths': BAD_PATHS[bad]}
    body = register_body(client_values=values) if slug == 'register/' else upload_body(client_values=values)
    with unchanged(alice):
        body = assert_refused(alice.post(slug, json=body), 400)
        assert 'file path' in body['detail'] or '_file_paths' in body['detail']


@pytest.mark.parametrize('path', ['%2E%2E/escape.txt', 'a/%2E%2E/%2E%2E/escape.txt', '%2E', 'a//b.txt',
                                  'a%00.txt', 'a%1B.txt', 'a%5C..%5Cb.txt', 'x' * 256, ''])
@pytest.mark.parametrize('method', ['put', 'get', 'delete'])
def test_invalid_file_path_in_url(alice, method, path):
    with unchanged(alice):
        answer = alice.request(method, f'files/{KEPT}/{STAMP2}/{path}', data=b'x')
        if method == 'delete' and path == '':
            assert answer.json() == {'deleted': 0}      # empty: all staged files of the version (none)
        else:
            assert_refused(answer, 400)


# -- users and passwords ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('username, status', [
    ('nobody', 404),
    ('Alice', 404),                 # user names are case-sensitive
    ('bob ', 404),
    ('a\x00b', 400),
    ('\ud800', 400),
])
def test_subscribe_an_unknown_user(alice, username, status):
    with unchanged(alice):
        answer = alice.post('subscribe/', json={'oaio_id': KEPT, 'username': username, 'access_right': 'r'})
        assert_refused(answer, status)


@pytest.mark.parametrize('uid', ['a\x00b', '\udfff'])
def test_wipe_user_with_an_impossible_name(shared_api, alice, uid):
    staff = shared_api('staff', staff=True)
    with unchanged(alice):
        assert_refused(staff.post('wipe_user/', json={'Uid': uid}), 400)


def test_subscribe_to_an_unknown_object(alice):
    with unchanged(alice):
        answer = alice.post('subscribe/', json={'oaio_id': 'no-such-object', 'username': 'bob', 'access_right': 'r'})
        assert_refused(answer, 404)


@pytest.mark.parametrize('username, password, status', [        # password: made from the right one
    ('alice', lambda right: 'wrong', 401),
    ('alice', lambda right: '', 401),
    ('alice', str.upper, 401),
    ('alice', lambda right: right + ' ', 401),
    ('alice', lambda right: 'x\x00' * 1000, 401),
    ('nobody', str, 401),
    ('', str, 401),
    ('a\x00b', str, 400),
])
def test_wrong_password(shared_api, alice, username, password, status):
    session = shared_api('anonymous', login=False)
    for _ in range(3):
        answer = session.post('login/', json={'username': username, 'password': password(shared_api.password)})
        body = assert_refused(answer, status)
        if status == 401:
            assert body == {'error': 'not_authenticated', 'detail': 'wrong user name or password'}
        assert 'sessionid' not in session.session.cookies
        assert_refused(session.get('oaio_stampz/'), 401)
    assert shared_api('alice', login=False).login().status_code == 200        # the server keeps serving
    assert alice.get('current_stamp/').status_code == 200


# -- conflicts --------------------------------------------------------------------------------------------

@pytest.mark.parametrize('who', ['owner', 'other user'])
def test_register_of_an_existing_id(shared_api, alice, who):
    session = alice if who == 'owner' else shared_api('carol')
    with unchanged(alice):
        answer = session.post('register/', json=register_body(KEPT, client_stamp=STAMP2,
                                                             client_values={'overwritten': True}))
        body = assert_refused(answer, 409)
        assert body['detail'] == "an object with id 'kept' is already registered"
    assert listed(alice)[KEPT]['client_values'] == {'_file_paths': ['a.txt'], 'v': 1}


@pytest.mark.parametrize('client_stamp, server_stamp, detail', [
    (STAMP2, '20261125101010123455', 'the object changed on the server'),      # based on an older version
    (STAMP2, '20261125101010123457', 'the object changed on the server'),      # based on a version never seen
    (STAMP, STAMP, f'client_stamp {STAMP} is not newer than the head {STAMP}'),
    ('20261125101010123455', STAMP, f'client_stamp 20261125101010123455 is not newer than the head {STAMP}'),
])
def test_upload_conflict(alice, client_stamp, server_stamp, detail):
    head = listed(alice)[KEPT]
    with unchanged(alice):
        answer = alice.post('upload/', json=upload_body(client_stamp=client_stamp, server_stamp=server_stamp))
        body = assert_refused(answer, 409)
        assert body['detail'].startswith(detail)
        assert body['head'] == head
        assert set(body) == {'error', 'detail', 'head'}


def test_upload_of_a_version_with_a_missing_file(alice):
    with unchanged(alice):
        answer = alice.post('upload/', json=upload_body(client_values={'_file_paths': ['b.txt']}))
        assert assert_refused(answer, 400)['missing'] == ['b.txt']


# -- files ------------------------------------------------------------------------------------------------

def leftovers(server) -> list:
    """Files left in the server's temporary directory."""
    tmp = server.data / 'tmp'
    return sorted(path.name for path in tmp.iterdir()) if tmp.exists() else []


def blob_files(server) -> set:
    return {path.name for path in (server.data / 'blobs').rglob('*') if path.is_file()}


@pytest.mark.parametrize('declared', [
    hashlib.sha256(b'other content').hexdigest(),
    hashlib.sha256(b'').hexdigest(),
])
def test_file_whose_content_does_not_match_its_hash(shared_api, alice, declared):
    content = f'content {next(_numbers)} that does not match'.encode()
    actual = hashlib.sha256(content).hexdigest()
    blobs_before = blob_files(shared_api.server)
    with unchanged(alice):
        answer = alice.request('put', f'files/mismatch/{STAMP}/a.txt', data=content,
                               headers={'X-OAIO-SHA256': declared})
        body = assert_refused(answer, 400)
        assert body == {'error': 'invalid', 'detail': f'content does not match its declared sha256 {declared}',
                        'sha256': actual}
        registered = alice.post('register/', json=register_body('mismatch', client_values={'_file_paths': ['a.txt']}))
        assert assert_refused(registered, 400)['missing'] == ['a.txt']
        missing = alice.post('blobs/missing/', json={'sha256': [actual, declared]})
        assert missing.json() == {'missing': [actual, declared]}
    assert blob_files(shared_api.server) == blobs_before
    assert leftovers(shared_api.server) == []


@pytest.mark.parametrize('declared', ['abc', SHA.upper(), SHA + '0', 'g' * 64, SHA[:-1] + ' '])
def test_file_with_a_malformed_hash_header(shared_api, alice, declared):
    content = f'content {next(_numbers)} with a malformed hash'.encode()
    with unchanged(alice):
        answer = alice.request('put', f'files/malformed/{STAMP}/a.txt', data=content,
                               headers={'X-OAIO-SHA256': declared})
        assert assert_refused(answer, 400)['detail'].startswith('sha256 must be 64 lowercase hex digits')
        missing = alice.post('blobs/missing/', json={'sha256': [hashlib.sha256(content).hexdigest()]})
        assert missing.json()['missing'] == [hashlib.sha256(content).hexdigest()]
    assert leftovers(shared_api.server) == []


def test_file_of_a_stored_version_never_changes(alice):
    with unchanged(alice):
        answer = alice.request('put', f'files/{KEPT}/{STAMP}/a.txt', data=b'replaced')
        detail = assert_refused(answer, 400)['detail']
        assert detail == f"version {STAMP} of 'kept' is stored already; versions never change"
    assert alice.get(f'files/{KEPT}/{STAMP}/a.txt').content == KEPT_CONTENT


def test_file_larger_than_the_limit(server, api):
    server.stop()
    server.env['OAIO_MAX_FILE_BYTES'] = '1000'
    server.start()
    alice = api('alice')
    assert alice.request('put', f'files/big/{STAMP}/small.txt', data=b'x' * 1000).status_code == 201
    answer = alice.request('put', f'files/big/{STAMP}/big.txt', data=b'y' * 1001)
    assert assert_refused(answer, 413)['detail'] == 'file is larger than the limit of 1000 bytes'
    chunked = alice.request('put', f'files/big/{STAMP}/big.txt', data=iter([b'y' * 600, b'y' * 600]))
    assert_refused(chunked, 413)
    assert leftovers(server) == []
    registered = alice.post('register/', json=register_body('big', client_values={
        '_file_paths': ['small.txt', 'big.txt']}))
    assert assert_refused(registered, 400)['missing'] == ['big.txt']
    assert listed(alice) == {}


# -- sizes ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('chunked', [False, True], ids=['content-length', 'chunked'])
@pytest.mark.parametrize('slug', ['register/', 'upload/', 'login/'])
def test_json_body_over_the_limit(alice, slug, chunked):
    body = (register_body('huge') if slug == 'register/' else upload_body()) | {'filler': 'x' * MAX_JSON_BYTES}
    data = json.dumps(body).encode()
    assert len(data) > MAX_JSON_BYTES
    with unchanged(alice):
        sent = iter([data[:MAX_JSON_BYTES // 2], data[MAX_JSON_BYTES // 2:]]) if chunked else data
        answer = alice.post(slug, data=sent, headers={'Content-Type': 'application/json'})
        assert_refused(answer, 413)
    assert 'huge' not in listed(alice)


def test_json_body_just_under_the_limit(alice):
    body = register_body('large', client_values={'filler': ''})
    room = MAX_JSON_BYTES - len(json.dumps(body).encode())
    body['client_values']['filler'] = 'x' * room
    assert len(json.dumps(body).encode()) == MAX_JSON_BYTES
    answer = alice.post('register/', json=body)
    assert answer.status_code == 200, answer.text[:200]
    assert alice.post('delete/', json={'oaio_id': 'large'}).status_code == 200


# -- endpoints, methods and query parameters --------------------------------------------------------------------

@pytest.mark.parametrize('method, path', [
    ('get', 'api/nope/'),
    ('post', 'api/nope/'),
    ('get', 'api/'),
    ('get', 'nope'),
    ('get', 'api/oaio_stampz'),             # no trailing slash: no endpoint (and no redirect that loses a POST)
    ('post', 'api/register'),
    ('post', 'api/upload'),
    ('get', 'api/files/'),
    ('get', f'api/files/{KEPT}'),
    ('get', f'api/files/{KEPT}/{STAMP}'),
    ('get', 'api/user_subz/a/b'),
    ('get', 'api/csh_args/'),
    ('get', 'api/csh_args/no-such-host'),
    ('get', 'api/changes'),
    ('put', 'api/nope/'),
])
def test_unknown_endpoint(alice, method, path):
    with unchanged(alice):
        url = alice.server.url.removesuffix('api/') + path
        headers = {'X-CSRFToken': alice.session.cookies['csrftoken'], 'Referer': url}
        answer = alice.session.request(method, url, headers=headers, allow_redirects=False, timeout=30,
                                       json=register_body('via-redirect'))
        assert_refused(answer, 404)
    assert 'via-redirect' not in listed(alice)


@pytest.mark.parametrize('method, slug', [
    ('put', 'register/'),
    ('delete', 'upload/'),
    ('patch', 'subscribe/'),
    ('post', 'oaio_stampz/'),
    ('post', 'current_stamp/'),
    ('delete', 'user_subz/kept'),
    ('post', 'csh_args/oaio'),
    ('post', 'changes/'),
    ('post', f'files/{KEPT}/{STAMP}/a.txt'),
])
def test_method_not_allowed(alice, method, slug):
    with unchanged(alice):
        assert_refused(alice.request(method, slug, json=register_body('via-method')), 405)


@pytest.mark.parametrize('query', ['since=abc', 'since=-1', 'since=1e3', 'since=1.5', 'since=99999999999999999999',
                                   'since=%00', 'since=%C2%B2', 'since=%D9%A3', 'since=%EF%BC%91',
                                   'wait=abc', 'wait=-1', 'wait=nan', 'wait=inf', 'wait=1e999'])
def test_change_feed_with_bad_parameters(alice, query):
    with unchanged(alice):
        body = assert_refused(alice.get(f'changes/?{query}'), 400)
        assert body['detail'].startswith(query.split('=')[0])
