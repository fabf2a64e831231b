"""Login throttling, forwarded addresses and the flags of the session and CSRF cookies, against a live server.

Throttling (throttle.py, docs/protocol.md): every way in through Django's ``authenticate()`` — the
API's ``login/`` and the admin's login form — is counted per pair of user name and client address
and per address. After ``OAIO_LOGIN_FAILURES`` (5) wrong passwords for one user name from one
address that pair waits ``OAIO_LOGIN_LOCKOUT`` (60 s), doubling with each further failure up to
``OAIO_LOGIN_WINDOW`` (15 min); after ``OAIO_LOGIN_ADDRESS_FAILURES`` (50) from one address within
the window the address waits. While waiting, login answers 429 with Retry-After — even to the right
password — and the admin form does not log in; every failed and every refused attempt is logged as
a WARNING of ``oaio.server.throttle`` with the user name and the address. The address is the
socket's peer unless that is one of ``OAIO_TRUSTED_PROXIES``: only then is X-Forwarded-For believed.
"""
import contextlib
import os
import time

import requests
from requests.adapters import HTTPAdapter

from oaio_testing import PASSWORD, Api, ServerProcess, wait_for


class SourceAddressAdapter(HTTPAdapter):
    """Connect from a given local address (any of 127.0.0.0/8 works on loopback)."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


def from_address(session: Api, address: str) -> Api:
    """The session, connecting from ``address`` from now on."""
    session.session.mount('http://', SourceAddressAdapter(address))
    return session


def wrong_login(session: Api) -> requests.Response:
    return session.login('not the password')


def forwarded_login(session: Api, address: str, password: str = 'not the password') -> requests.Response:
    """A login that says it was forwarded for ``address``."""
    return session.post('login/', json={'username': session.username, 'password': password},
                        headers={'X-Forwarded-For': address})


@contextlib.contextmanager
def throttling_server(tmp_path, **settings):
    """A server of its own with these settings (e.g. ``OAIO_LOGIN_FAILURES='2'``) and user alice."""
    env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', **settings)
    env.pop('DATABASE_URL', None)
    srv = ServerProcess(data=tmp_path / 'data', env=env)
    srv.adduser('alice')
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def assert_throttled(answer: requests.Response, longest: float) -> int:
    """The answer is the 429 of a throttled login, with a Retry-After of at most ``longest``; that."""
    assert answer.status_code == 429, answer.text
    assert set(answer.json()) == {'error', 'detail', 'retry_after'}
    assert answer.json()['error'] == 'too_many_requests'
    retry_after = int(answer.headers['Retry-After'])
    assert 0 < retry_after <= longest
    assert answer.json()['retry_after'] == retry_after
    assert 'sessionid' not in answer.cookies
    return retry_after


def logged_attempts(server, count: int, user: str, address: str = '127.0.0.1') -> list[str]:
    """The log lines of failed and refused logins of ``user`` from ``address``, once there are ``count``."""
    def attempts():
        lines = [line for line in server.log().splitlines() if f'for user {user!r} from {address}' in line]
        return lines if len(lines) >= count else []
    lines = wait_for(attempts, what=f'{count} attempts of {user} from {address} logged')
    assert all(' WARNING oaio.server.throttle: ' in line for line in lines), lines
    return lines


def test_wrong_passwords_are_throttled_per_user_name_and_address(server, api):
    api('alice')
    api('bob')
    mallory = Api(server, 'alice', device='attacker')
    for _ in range(5):
        answer = wrong_login(mallory)
        assert answer.status_code == 401, answer.text
        assert answer.json()['error'] == 'not_authenticated'
    for password in ('still wrong', PASSWORD):          # the right password is refused too while throttled
        assert_throttled(mallory.login(password), longest=60)
    assert_throttled(Api(server, 'ALICE').login(), longest=60)     # user names count case-insensitively
    # other users from the same address are not affected, nor alice's existing sessions
    bob = Api(server, 'bob')
    assert bob.login().status_code == 200
    assert bob.get('oaio_stampz/').status_code == 200
    # every failed and refused attempt is logged with user name and address, as a warning (no error)
    lines = logged_attempts(server, 7, 'alice') + logged_attempts(server, 1, 'ALICE')
    assert sum('login failed' in line for line in lines) == 5, lines
    assert sum('login refused (throttled' in line for line in lines) == 3, lines


def test_a_strangers_guesses_do_not_lock_the_user_out(server, api):
    api('alice')
    mallory = from_address(Api(server, 'alice', device='attacker'), '127.0.0.2')
    for _ in range(5):
        assert wrong_login(mallory).status_code == 401
    assert_throttled(mallory.login(), longest=60)
    alice = from_address(Api(server, 'alice'), '127.0.0.1')
    assert alice.login().status_code == 200
    assert alice.get('oaio_stampz/').status_code == 200
    assert_throttled(mallory.login(), longest=60)        # her login does not clear the stranger's count
    assert sum('login failed' in line for line in logged_attempts(server, 7, 'alice', '127.0.0.2')) == 5


def admin_login(server, username: str, password: str) -> requests.Session:
    """Log in through the admin's form, as a browser does; the session, logged in or not."""
    session = requests.Session()
    url = f'http://{server.host}/admin/login/'
    assert session.get(url, timeout=30).ok
    answer = session.post(url, timeout=30, headers={'Referer': url}, data={
        'username': username, 'password': password, 'next': '/admin/',
        'csrfmiddlewaretoken': session.cookies['csrftoken']})
    assert answer.ok, answer.text
    return session


def is_admin(server, session: requests.Session) -> bool:
    return session.get(f'http://{server.host}/admin/', timeout=30, allow_redirects=False).status_code == 200


def test_the_admin_login_form_is_throttled_with_the_api(server):
    server.adduser('root', staff=True)
    server.adduser('admin', staff=True)
    assert is_admin(server, admin_login(server, 'root', PASSWORD))
    # throttled through the API: the admin form refuses even the right password, and logs it
    root = Api(server, 'root')
    for _ in range(5):
        assert wrong_login(root).status_code == 401
    assert_throttled(root.login(), longest=60)
    session = admin_login(server, 'root', PASSWORD)
    assert 'sessionid' not in session.cookies and not is_admin(server, session)
    assert sum('login refused (throttled' in line for line in logged_attempts(server, 7, 'root')) == 2
    # wrong guesses in the admin form count as well: then the API refuses, and the form too
    for _ in range(5):
        assert not is_admin(server, admin_login(server, 'admin', 'not the password'))
    assert_throttled(Api(server, 'admin').login(), longest=60)
    assert not is_admin(server, admin_login(server, 'admin', PASSWORD))
    lines = logged_attempts(server, 7, 'admin')
    assert sum('login failed' in line for line in lines) == 5, lines


def test_each_further_failure_of_a_pair_doubles_its_wait(tmp_path):
    with throttling_server(tmp_path, OAIO_LOGIN_FAILURES='2', OAIO_LOGIN_LOCKOUT='1',
                           OAIO_LOGIN_WINDOW='60') as srv:
        alice = Api(srv, 'alice')
        assert wrong_login(alice).status_code == 401
        assert wrong_login(alice).status_code == 401
        for wait in (1, 2, 4):
            retry_after = assert_throttled(alice.login(), longest=wait)
            assert retry_after > wait / 2
            time.sleep(retry_after + 0.2)
            if wait < 4:
                assert wrong_login(alice).status_code == 401
        assert alice.login().status_code == 200          # after the wait; it clears the count
        assert wrong_login(alice).status_code == 401
        assert wrong_login(alice).status_code == 401
        assert assert_throttled(alice.login(), longest=1) == 1


def test_the_window_passes_and_a_right_password_clears_the_count(tmp_path):
    with throttling_server(tmp_path, OAIO_LOGIN_FAILURES='2', OAIO_LOGIN_WINDOW='2') as srv:
        alice = Api(srv, 'alice')
        assert wrong_login(alice).status_code == 401
        assert alice.login().status_code == 200          # a success clears the pair's count
        assert wrong_login(alice).status_code == 401
        assert wrong_login(alice).status_code == 401
        assert_throttled(alice.login(), longest=2)       # the window is the longest wait
        wait_for(lambda: alice.login().status_code == 200, timeout=10, interval=0.5, what='the wait passed')


def test_many_user_names_from_one_address_are_throttled(tmp_path):
    with throttling_server(tmp_path, OAIO_LOGIN_ADDRESS_FAILURES='6') as srv:
        for number in range(6):
            assert wrong_login(Api(srv, f'guess{number}')).status_code == 401
        assert wrong_login(Api(srv, 'guess-new')).status_code == 429
        assert Api(srv, 'alice').login().status_code == 429       # the address is throttled for everybody
        assert from_address(Api(srv, 'alice'), '127.0.0.2').login().status_code == 200     # only that one


def test_forwarded_for_is_ignored_without_trusted_proxies(tmp_path):
    with throttling_server(tmp_path, OAIO_LOGIN_ADDRESS_FAILURES='3') as srv:
        for number in range(3):
            assert forwarded_login(Api(srv, f'guess{number}'), f'10.0.0.{number}').status_code == 401
        assert forwarded_login(Api(srv, 'guess-new'), '10.0.0.9').status_code == 429     # all from 127.0.0.1
        logged_attempts(srv, 1, 'guess-new')
        assert '10.0.0.' not in srv.log()


def test_forwarded_for_is_believed_from_a_trusted_proxy(tmp_path):
    with throttling_server(tmp_path, OAIO_TRUSTED_PROXIES='127.0.0.1', OAIO_LOGIN_FAILURES='2',
                           OAIO_LOGIN_ADDRESS_FAILURES='3') as srv:
        for number in range(4):         # four clients behind the proxy: no address has three failures
            assert forwarded_login(Api(srv, f'guess{number}'), f'10.0.0.{number}').status_code == 401
        logged_attempts(srv, 1, 'guess3', '10.0.0.3')
        # a stranger behind the proxy does not lock out alice behind the same proxy
        mallory = Api(srv, 'alice', device='attacker')
        for _ in range(2):
            assert forwarded_login(mallory, '10.0.0.66').status_code == 401
        assert_throttled(forwarded_login(mallory, '10.0.0.66', PASSWORD), longest=60)
        assert forwarded_login(Api(srv, 'alice'), '10.0.0.7', PASSWORD).status_code == 200
        # only the configured proxy is believed
        assert forwarded_login(from_address(Api(srv, 'carol'), '127.0.0.2'), '10.0.0.99').status_code == 401
        logged_attempts(srv, 1, 'carol', '127.0.0.2')


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
