"""CSRF as the original client meets it, and the X-OAIO-* context headers, against a live server.

WIRE.md: before its first non-GET request the client GETs the same URL for the ``csrftoken``
cookie; non-GET requests carry ``X-CSRFToken``, ``Referer`` and the cookie; after login the token
rotates and the client copies the new cookie value into the header. The context headers carry
``repr()`` of the UTF-8 bytes of an id (or plain text) and are decoded safely, never evaluated.
"""
import itertools
import pathlib

import pytest
import requests

STAMP = '20261125101010123456'
POST_ENDPOINTS = ('login/', 'logout/', 'register/', 'upload/', 'delete/', 'subscribe/', 'wipe_user/',
                  'blobs/missing/')
_numbers = itertools.count(1)


def listed(session) -> dict:
    answer = session.get('oaio_stampz/')
    assert answer.status_code == 200, answer.text
    return {obj['oaio_id']: obj for obj in answer.json()}


def assert_csrf_refused(answer) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers['Content-Type'] == 'application/json'
    body = answer.json()
    assert body['error'] == 'csrf'
    assert body['detail'].startswith('CSRF check failed: ')
    assert set(body) == {'error', 'detail'}


# how a request lacks its token: (send the cookie?, the X-CSRFToken header: 'right' / None / a wrong value)
BROKEN_TOKENS = {
    'no-cookie-no-header': (False, None),
    'cookie-without-header': (True, None),
    'header-without-cookie': (False, 'right'),
    'wrong-header': (True, 'x' * 32),
    'malformed-header': (True, 'not a token!'),
}


def send_with_broken_token(cookies, url: str, method: str, broken: str, **kwargs) -> requests.Response:
    """Send with a copy of ``cookies``, but with the CSRF cookie and header as ``broken`` says."""
    send_cookie, header = BROKEN_TOKENS[broken]
    jar = cookies.copy()
    token = jar['csrftoken']
    if not send_cookie:
        del jar['csrftoken']
    headers = {'Referer': url}
    if header is not None:
        headers['X-CSRFToken'] = token if header == 'right' else header
    return requests.request(method, url, cookies=jar, headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize('broken', list(BROKEN_TOKENS))
def test_login_without_token_is_refused_and_logs_nobody_in(shared_api, broken):
    shared_api('alice')
    url = shared_api.server.url
    session = requests.Session()
    assert session.get(url + 'login/', timeout=30).status_code == 200
    answer = send_with_broken_token(session.cookies, url + 'login/', 'post', broken,
                                    json={'username': 'alice', 'password': shared_api.password})
    assert_csrf_refused(answer)
    assert 'sessionid' not in answer.cookies
    assert session.get(url + 'oaio_stampz/', timeout=30).status_code == 401


@pytest.mark.parametrize('broken', list(BROKEN_TOKENS))
@pytest.mark.parametrize('method, slug, kwargs', [
    ('post', 'register/', {'json': {'oaio_id': 'csrf-victim', 'client_stamp': STAMP, 'client_values': {}}}),
    ('post', 'delete/', {'json': {'oaio_id': 'csrf-kept'}}),
    ('post', 'subscribe/', {'json': {'oaio_id': 'csrf-kept', 'username': 'mallory', 'access_right': 'C'}}),
    ('post', 'upload/', {'json': {'oaio_id': 'csrf-kept', 'client_stamp': '20261125101010123457',
                                  'server_stamp': STAMP, 'client_values': {'changed': True}}}),
    ('post', 'wipe_user/', {'json': {'Uid': 'alice'}}),
    ('post', 'logout/', {}),
    ('put', f'files/csrf-victim/{STAMP}/a.txt', {'data': b'planted'}),
    ('delete', f'files/csrf-kept/{STAMP}/a.txt', {}),
])
def test_logged_in_request_without_token_is_refused(shared_api, method, slug, kwargs, broken):
    alice = shared_api('alice')
    shared_api('mallory')
    if 'csrf-kept' not in listed(alice):
        assert alice.request('put', f'files/csrf-kept/{STAMP}/a.txt', data=b'kept').status_code == 201
        assert alice.post('register/', json={'oaio_id': 'csrf-kept', 'client_stamp': STAMP,
                                             'client_values': {'_file_paths': ['a.txt']}}).ok
    before = listed(alice), alice.get('user_subz/csrf-kept').json()
    answer = send_with_broken_token(alice.session.cookies, alice.server.url + slug, method, broken, **kwargs)
    assert_csrf_refused(answer)
    assert (listed(alice), alice.get('user_subz/csrf-kept').json()) == before
    assert alice.get(f'files/csrf-kept/{STAMP}/a.txt').content == b'kept'
    registered = alice.post('register/', json={'oaio_id': 'csrf-victim', 'client_stamp': STAMP,
                                               'client_values': {'_file_paths': ['a.txt']}})
    assert registered.status_code == 400, registered.text          # no file was planted for it
    assert registered.json()['missing'] == ['a.txt']


@pytest.mark.parametrize('logged_in', [False, True], ids=['anonymous', 'logged-in'])
@pytest.mark.parametrize('slug', POST_ENDPOINTS)
def test_get_on_a_post_endpoint_sets_the_cookie(shared_api, slug, logged_in):
    session = shared_api('alice').session if logged_in else requests.Session()
    session.cookies.pop('csrftoken', None)
    answer = session.get(shared_api.server.url + slug, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers['Content-Type'] == 'application/json'
    assert answer.json() == {'detail': 'send POST here; this GET sets the CSRF cookie'}
    assert 'csrftoken=' in answer.headers['Set-Cookie']
    token = session.cookies['csrftoken']
    assert len(token) == 32 and token.isalnum()


def test_token_rotates_at_login_and_the_client_must_follow(shared_api):
    shared_api('alice')
    url = shared_api.server.url
    session = requests.Session()
    assert session.get(url + 'login/', timeout=30).status_code == 200
    before = session.cookies['csrftoken']
    login = session.post(url + 'login/', json={'username': 'alice', 'password': shared_api.password}, timeout=30,
                         headers={'X-CSRFToken': before, 'Referer': url + 'login/'})
    assert login.status_code == 200, login.text
    after = session.cookies['csrftoken']
    assert after != before
    body = {'oaio_id': 'rotated', 'client_stamp': STAMP, 'client_values': {}}
    stale = session.post(url + 'register/', json=body, headers={'X-CSRFToken': before, 'Referer': url + 'register/'},
                         timeout=30)
    assert_csrf_refused(stale)
    assert 'rotated' not in {obj['oaio_id'] for obj in session.get(url + 'oaio_stampz/', timeout=30).json()}
    fresh = session.post(url + 'register/', json=body, headers={'X-CSRFToken': after, 'Referer': url + 'register/'},
                         timeout=30)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()['oaio_id'] == 'rotated'


def test_login_and_logout_without_referer_over_http(shared_api):
    """Django checks the Referer only over HTTPS; over plain HTTP the token alone is enough."""
    shared_api('alice')
    url = shared_api.server.url
    session = requests.Session()
    session.get(url + 'login/', timeout=30)
    answer = session.post(url + 'login/', json={'username': 'alice', 'password': shared_api.password}, timeout=30,
                          headers={'X-CSRFToken': session.cookies['csrftoken']})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {'username': 'alice'}


@pytest.mark.parametrize('sent, decoded', [
    (repr('Jürgen'.encode()), 'Jürgen'),                 # what the original client sends: b'J\xc3\xbcrgen'
    ("b'J\\xc3\\xbcrgen'", 'Jürgen'),
    (repr('⫻﹫⁄'.encode()), '⫻﹫⁄'),
    ("b'laptop'", 'laptop'),
    ('b"it\'s"', "it's"),
    ('laptop', 'laptop'),                               # a plain string
    ('my laptop (2)', 'my laptop (2)'),
    ("b''", ''),
    ('', ''),
])
def test_context_headers_are_decoded(shared_api, sent, decoded):
    alice = shared_api('alice')
    oaio_id = f'context-{next(_numbers)}'
    headers = {'X-OAIO-dvc': sent, 'X-OAIO-app': sent, 'X-OAIO-user': sent}
    answer = alice.post('register/', json={'oaio_id': oaio_id, 'client_stamp': STAMP, 'client_values': {}},
                        headers=headers)
    assert answer.status_code == 200, answer.text
    registered, stored = answer.json(), listed(alice)[oaio_id]
    assert (registered['device_id'], registered['app_id'], registered['username']) == (decoded, decoded, 'alice')
    assert (stored['device_id'], stored['app_id']) == (decoded, decoded)


HOSTILE = {
    'not-utf8': "b'\\xff\\xfe'",
    'latin1-not-utf8': "b'J\\xfcrgen'",
    'nul': "b'a\\x00b'",
    'newline': "b'a\\nb'",
    'escape': "b'a\\x1b[31mb'",
    'c1-control': "b'\\xc2\\x85'",
    'overlong-literal': "b'" + 'a' * 600 + "'",
    'overlong-decoded': "b'" + 'a' * 129 + "'",
    'overlong-plain': 'a' * 129,
    'code-concat': "b'x' + b'y'",
    'code-import': "b'x' + __import__('pathlib').Path('{marker}').touch()",
    'code-call': "b'x'.decode()",
    'code-import-quoted': "b'x' + __import__('pathlib').Path('{marker}').touch() or b'y'",
    'unterminated': "b'x",
    'mixed-quotes': "b'x\"",
}


@pytest.mark.parametrize('header', ['X-OAIO-dvc', 'X-OAIO-app', 'X-OAIO-user'])
@pytest.mark.parametrize('hostile', list(HOSTILE))
def test_hostile_context_header_is_refused(shared_api, tmp_path, header, hostile):
    alice = shared_api('alice')
    marker = tmp_path / 'evaluated'
    value = HOSTILE[hostile].replace('{marker}', str(marker))
    oaio_id = f'hostile-{next(_numbers)}'
    answer = alice.post('register/', json={'oaio_id': oaio_id, 'client_stamp': STAMP, 'client_values': {}},
                        headers={header: value})
    assert answer.status_code == 400, answer.text
    assert answer.json()['error'] == 'invalid'
    assert answer.json()['detail'].startswith(header)
    listing = alice.get('oaio_stampz/', headers={header: value})
    assert listing.status_code == 400, listing.text
    assert oaio_id not in listed(alice)
    assert not pathlib.Path(marker).exists()
