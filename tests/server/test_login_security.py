"""Login throttling and the flags of the session and CSRF cookies, against a live server.

Throttling (docs/protocol.md, login): after ``OAIO_LOGIN_FAILURES`` (5) wrong passwords for one
user name within ``OAIO_LOGIN_WINDOW`` (15 min), or ``OAIO_LOGIN_ADDRESS_FAILURES`` (50) from one
client address, login answers 429 with Retry-After — even to the right password — and every
refused attempt is logged as a WARNING of ``oaio.server`` with the user name and the address.
"""
import os

import requests

from oaio_testing import PASSWORD, Api, ServerProcess, wait_for


def wrong_login(session: Api) -> requests.Response:
    return session.login('not the password')


def test_wrong_passwords_are_throttled_per_user_name(server, api):
    api('alice')
    api('bob')
    mallory = Api(server, 'alice', device='attacker')
    for _ in range(5):
        answer = wrong_login(mallory)
        assert answer.status_code == 401, answer.text
        assert answer.json()['error'] == 'not_authenticated'
    for password in ('still wrong', PASSWORD):          # the right password is refused too while throttled
        answer = mallory.login(password)
        assert answer.status_code == 429, answer.text
        assert set(answer.json()) == {'error', 'detail', 'retry_after'}
        assert answer.json()['error'] == 'too_many_requests'
        retry_after = int(answer.headers['Retry-After'])
        assert 0 < retry_after <= 15 * 60
        assert answer.json()['retry_after'] == retry_after
        assert 'sessionid' not in answer.cookies
    assert Api(server, 'ALICE').login().status_code == 429       # user names count case-insensitively
    # other users from the same address are not affected, nor alice's existing sessions
    bob = Api(server, 'bob')
    assert bob.login().status_code == 200
    assert bob.get('oaio_stampz/').status_code == 200
    # every refused attempt is logged with user name and address, as a warning (no error)
    log = wait_for(lambda: server.log() if server.log().count("for user 'alice' from 127.0.0.1") >= 7 else '',
                   what='the refused logins logged')
    failed = [line for line in log.splitlines() if 'login failed' in line]
    throttled = [line for line in log.splitlines() if 'login refused (throttled' in line]
    assert len(failed) == 5 and len(throttled) == 3, log
    assert all(' WARNING oaio.server: ' in line and '127.0.0.1' in line for line in failed + throttled), log


def test_the_window_passes_and_a_right_password_clears_the_count(tmp_path):
    env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', OAIO_LOGIN_FAILURES='2', OAIO_LOGIN_WINDOW='2')
    env.pop('DATABASE_URL', None)
    srv = ServerProcess(data=tmp_path / 'data', env=env)
    srv.adduser('alice')
    srv.start()
    try:
        alice = Api(srv, 'alice')
        assert wrong_login(alice).status_code == 401
        assert alice.login().status_code == 200          # a success clears the user name's count
        assert wrong_login(alice).status_code == 401
        assert wrong_login(alice).status_code == 401
        answer = alice.login()
        assert answer.status_code == 429 and 1 <= int(answer.headers['Retry-After']) <= 2
        wait_for(lambda: alice.login().status_code == 200, timeout=10, interval=0.5, what='the window passed')
    finally:
        srv.stop()


def test_many_user_names_from_one_address_are_throttled(tmp_path):
    env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', OAIO_LOGIN_ADDRESS_FAILURES='6')
    env.pop('DATABASE_URL', None)
    srv = ServerProcess(data=tmp_path / 'data', env=env)
    srv.adduser('alice')
    srv.start()
    try:
        for number in range(6):
            assert wrong_login(Api(srv, f'guess{number}')).status_code == 401
        assert wrong_login(Api(srv, 'guess-new')).status_code == 429
        assert Api(srv, 'alice').login().status_code == 429       # the address is throttled for everybody
    finally:
        srv.stop()


def cookie_flags(answer: requests.Response, name: str) -> list[str]:
    """The attributes of cookie ``name`` in the Set-Cookie headers of an answer, lower-cased."""
    for header in answer.raw.headers.getlist('Set-Cookie'):
        if header.startswith(name + '='):
            return [part.strip().lower() for part in header.split(';')[1:]]
    raise AssertionError(f'no {name} cookie in {answer.raw.headers.getlist("Set-Cookie")}')


def test_session_cookie_is_httponly_and_samesite_lax_but_not_secure_over_http(server, api):
    alice = Api(server, server.adduser('alice'))
    token = cookie_flags(alice.session.get(server.url + 'login/', timeout=30), 'csrftoken')
    answer = alice.login()
    assert answer.status_code == 200
    session = cookie_flags(answer, 'sessionid')
    assert 'httponly' in session and 'samesite=lax' in session and 'secure' not in session
    assert 'httponly' not in token and 'samesite=lax' in token and 'secure' not in token


def test_cookies_are_secure_with_oaio_https(tmp_path):
    env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', OAIO_HTTPS='1')
    env.pop('DATABASE_URL', None)
    srv = ServerProcess(data=tmp_path / 'data', env=env)
    srv.adduser('alice')
    srv.start()
    try:
        # as a TLS-terminating proxy forwards it
        proxy = {'X-Forwarded-Proto': 'https'}
        first = requests.get(srv.url + 'login/', headers=proxy, timeout=30)
        assert 'secure' in cookie_flags(first, 'csrftoken')
        token = first.cookies['csrftoken']
        answer = requests.post(srv.url + 'login/', json={'username': 'alice', 'password': PASSWORD},
                               cookies={'csrftoken': token}, timeout=30,
                               headers={**proxy, 'X-CSRFToken': token, 'Referer': f'https://{srv.host}/api/login/'})
        assert answer.status_code == 200, answer.text
        flags = cookie_flags(answer, 'sessionid')
        assert {'secure', 'httponly', 'samesite=lax'} <= set(flags)
        assert 'secure' in cookie_flags(answer, 'csrftoken')
        # https needs a Referer of the same https origin
        answer = requests.post(srv.url + 'logout/', cookies={'csrftoken': token}, timeout=30,
                               headers={**proxy, 'X-CSRFToken': token, 'Referer': f'http://{srv.host}/api/logout/'})
        assert answer.status_code == 403 and answer.json()['error'] == 'csrf'
    finally:
        srv.stop()
