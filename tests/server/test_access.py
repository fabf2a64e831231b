"""The access-right matrix: every endpoint × every kind of caller, against a live server.

In each case the owner alice registers an object of its own (with a value and a file) and shares
it with carol (``U``). The caller is alice herself, bob subscribed with one right (``C`` ``D`` ``U``
``r``), bob without a subscription, or a session that never logged in (with a valid CSRF token,
so that only authentication is tested). Each row of ``MATRIX`` names the status each caller gets;
a refused request must leave the object and its subscriptions exactly as they were and never
show the object's data. One server serves the whole module; every case has its own object.
"""
import hashlib
import itertools
from dataclasses import dataclass
from urllib.parse import quote

import pytest

STAMP1, STAMP2 = '20261125101010123456', '20261125101010223456'
CALLERS = ('owner', 'C', 'D', 'U', 'r', 'none', 'anonymous')
SUBSCRIBERS = ('owner', 'C', 'D', 'U', 'r')
ERROR_CODES = {401: 'not_authenticated', 403: 'forbidden', 404: 'not_found'}
RIGHT_ORDER = {'C': 0, 'D': 1, 'U': 2, 'r': 3}

#                       owner  C    D    U    r   none anonymous
MATRIX = {
    'oaio_stampz':       (200, 200, 200, 200, 200, 200, 401),
    'changes':           (200, 200, 200, 200, 200, 200, 401),
    'user_subz':         (200, 200, 200, 200, 200, 200, 401),
    'files_get':         (200, 200, 200, 200, 200, 404, 401),
    'files_put':         (201, 201, 201, 201, 403, 404, 401),
    'files_delete':      (200, 200, 200, 200, 403, 404, 401),
    'upload':            (200, 200, 200, 200, 403, 404, 401),
    'delete':            (200, 200, 200, 403, 403, 404, 401),
    'unsubscribe_self':  (403, 200, 200, 200, 200, 404, 401),
    'upgrade_self':      (403, 200, 403, 403, 403, 404, 401),
    'subscribe_other':   (200, 200, 403, 403, 403, 404, 401),
    'change_other':      (200, 200, 403, 403, 403, 404, 401),
    'unsubscribe_other': (200, 200, 403, 403, 403, 404, 401),
    'change_owner':      (403, 403, 403, 403, 403, 404, 401),
}

_numbers = itertools.count(1)


@dataclass
class World:
    """One case: the owner's shared object and the caller under test."""

    api: object                 # the shared_api fixture
    owner: object
    carol: object
    caller: object
    kind: str
    oaio_id: str
    secret: str
    content: bytes

    @property
    def name(self) -> str:
        return self.caller.username

    @property
    def url_id(self) -> str:
        return quote(self.oaio_id)      # URL paths (and the Referer header) are ASCII

    @property
    def file_url(self) -> str:
        return f'files/{self.url_id}/{STAMP1}/doc.txt'

    def subscriptions(self) -> dict:
        """{username: right} of the object as its owner sees it."""
        answer = self.owner.get(f'user_subz/{self.url_id}')
        assert answer.status_code == 200, answer.text
        return {row['username']: row['access_right'] for row in answer.json() if row['access_right'] != 'x'}

    def state(self) -> tuple:
        """What a request of the matrix could change: the object's head and its subscriptions."""
        return listed(self.owner).get(self.oaio_id), self.subscriptions()


def listed(session) -> dict:
    answer = session.get('oaio_stampz/')
    assert answer.status_code == 200, answer.text
    return {obj['oaio_id']: obj for obj in answer.json()}


def anonymous(shared_api):
    """A session that never logged in, holding the CSRF cookie from a GET of login/."""
    session = shared_api('anonymous', login=False)
    assert session.get('login/').status_code == 200
    return session


def make_world(shared_api, kind: str) -> World:
    number = next(_numbers)
    oaio_id = f'tests⫻alice﹫laptop⁄shared␣notes␣{number}⁄{STAMP1}'      # as the original client builds ids
    owner = shared_api('alice')
    w = World(shared_api, owner, shared_api('carol'), owner, kind, oaio_id,
              secret=f'secret-value-{number}-7f3a09', content=f'secret file content {number} 41c9e2'.encode())
    put = owner.request('put', w.file_url, data=w.content)
    assert put.status_code == 201, put.text
    registered = owner.post('register/', json={'oaio_id': oaio_id, 'client_stamp': STAMP1, 'client_values': {
        'secret': w.secret, '_file_paths': ['doc.txt']}})
    assert registered.status_code == 200, registered.text
    assert subscribe(w, 'carol', 'U').status_code == 200
    if kind == 'anonymous':
        w.caller = anonymous(shared_api)
    elif kind != 'owner':
        w.caller = shared_api('bob')
        if kind != 'none':
            assert owner.post('subscribe/', json={'oaio_id': oaio_id, 'username': 'bob', 'access_right': kind}).ok
    return w


def subscribe(w: World, username: str, right: str):
    return w.caller.post('subscribe/', json={'oaio_id': w.oaio_id, 'username': username, 'access_right': right})


def new_version(w: World, values: dict):
    return w.caller.post('upload/', json={'oaio_id': w.oaio_id, 'client_stamp': STAMP2, 'server_stamp': STAMP1,
                                          'client_values': values})


def new_file(w: World) -> bytes:
    return b'new file of ' + w.content


REQUESTS = {
    'oaio_stampz': lambda w: w.caller.get('oaio_stampz/'),
    'changes': lambda w: w.caller.get('changes/'),
    'user_subz': lambda w: w.caller.get(f'user_subz/{w.url_id}'),
    'files_get': lambda w: w.caller.get(w.file_url),
    'files_put': lambda w: w.caller.request('put', f'files/{w.url_id}/{STAMP2}/new.txt', data=new_file(w)),
    'files_delete': lambda w: w.caller.request('delete', w.file_url),
    'upload': lambda w: new_version(w, {'secret': 'changed'}),
    'delete': lambda w: w.caller.post('delete/', json={'oaio_id': w.oaio_id}),
    'unsubscribe_self': lambda w: subscribe(w, w.name, 'x'),
    'upgrade_self': lambda w: subscribe(w, w.name, 'C'),
    'subscribe_other': lambda w: subscribe(w, w.api('dave').username, 'r'),
    'change_other': lambda w: subscribe(w, 'carol', 'r'),
    'unsubscribe_other': lambda w: subscribe(w, 'carol', 'x'),
    'change_owner': lambda w: subscribe(w, 'alice', 'r'),
}


def right_of(kind: str) -> str:
    return 'C' if kind == 'owner' else kind


def expected_subscriptions(w: World) -> dict:
    subs = {'alice': 'C', 'carol': 'U'}
    if w.kind in ('C', 'D', 'U', 'r'):
        subs['bob'] = w.kind
    return subs


def check_listing(w: World, answer) -> None:
    mine = [obj for obj in answer.json() if obj['oaio_id'] == w.oaio_id]
    if w.kind not in SUBSCRIBERS:
        assert mine == [] and w.secret not in answer.text
        return
    assert len(mine) == 1
    assert set(mine[0]) == {'oaio_id', 'client_stamp', 'server_stamp', 'client_values', 'server_values',
                            'csh_id', 'username', 'device_id', 'app_id', 'csh_access_right'}
    assert mine[0]['csh_access_right'] == right_of(w.kind)
    assert mine[0]['client_values'] == {'secret': w.secret, '_file_paths': ['doc.txt']}


def check_changes(w: World, answer) -> None:
    body = answer.json()
    assert body['snapshot'] is True
    mine = [entry for entry in body['changes'] if entry['oaio']['oaio_id'] == w.oaio_id]
    if w.kind not in SUBSCRIBERS:
        assert mine == [] and w.secret not in answer.text
        return
    assert [entry['oaio']['csh_access_right'] for entry in mine] == [right_of(w.kind)]
    assert mine[0]['files']['doc.txt']['sha256'] == hashlib.sha256(w.content).hexdigest()


def check_user_subz(w: World, answer) -> None:
    if w.kind in SUBSCRIBERS:
        rows = sorted(expected_subscriptions(w).items(), key=lambda row: (RIGHT_ORDER[row[1]], row[0]))
        assert answer.json() == [{'username': name, 'access_right': right} for name, right in rows]
    else:       # the object looks unknown: every user with x, nothing about its subscribers
        unknown = w.caller.get('user_subz/no-such-object')
        assert answer.json() == unknown.json()
        assert {row['access_right'] for row in answer.json()} == {'x'}
        assert {'alice', 'bob', 'carol'} <= {row['username'] for row in answer.json()}


def check_files_get(w: World, answer) -> None:
    assert answer.content == w.content
    assert answer.headers['X-OAIO-SHA256'] == hashlib.sha256(w.content).hexdigest()


def check_files_put(w: World, answer) -> None:
    assert answer.json() == {'sha256': hashlib.sha256(new_file(w)).hexdigest(), 'size': len(new_file(w))}
    uploaded = new_version(w, {'_file_paths': ['new.txt']})       # the staged file completes the version
    assert uploaded.status_code == 200, uploaded.text
    got = w.owner.get(f'files/{w.url_id}/{STAMP2}/new.txt')
    assert got.status_code == 200 and got.content == new_file(w)


def check_files_delete(w: World, answer) -> None:
    assert answer.json() == {'deleted': 0}          # a stored version never changes
    got = w.owner.get(w.file_url)
    assert got.status_code == 200 and got.content == w.content


def check_upload(w: World, answer) -> None:
    head = listed(w.owner)[w.oaio_id]
    assert (head['client_stamp'], head['client_values'], head['username']) == (STAMP2, {'secret': 'changed'}, w.name)
    assert answer.json() == {**head, 'csh_access_right': right_of(w.kind)}


def check_delete(w: World, answer) -> None:
    assert answer.json() == {'detail': 'deleted'}
    assert w.oaio_id not in listed(w.owner)
    assert w.oaio_id not in listed(w.carol)
    assert w.owner.get(w.file_url).status_code == 404


def check_subscriptions(change):
    def check(w: World, answer) -> None:
        subs = {**expected_subscriptions(w), **change(w)}
        assert w.subscriptions() == {name: right for name, right in subs.items() if right != 'x'}
        assert isinstance(answer.json()['Pid'], int)
    return check


def check_unsubscribe_self(w: World, answer) -> None:
    check_subscriptions(lambda w: {w.name: 'x'})(w, answer)
    assert w.oaio_id not in listed(w.caller)
    assert w.caller.get(w.file_url).status_code == 404


def check_subscribe_other(w: World, answer) -> None:
    check_subscriptions(lambda w: {'dave': 'r'})(w, answer)
    assert listed(w.api('dave'))[w.oaio_id]['csh_access_right'] == 'r'


def check_unsubscribe_other(w: World, answer) -> None:
    check_subscriptions(lambda w: {'carol': 'x'})(w, answer)
    assert w.oaio_id not in listed(w.carol)


CHECKS = {
    'oaio_stampz': check_listing,
    'changes': check_changes,
    'user_subz': check_user_subz,
    'files_get': check_files_get,
    'files_put': check_files_put,
    'files_delete': check_files_delete,
    'upload': check_upload,
    'delete': check_delete,
    'unsubscribe_self': check_unsubscribe_self,
    'upgrade_self': check_subscriptions(lambda w: {w.name: 'C'}),
    'subscribe_other': check_subscribe_other,
    'change_other': check_subscriptions(lambda w: {'carol': 'r'}),
    'unsubscribe_other': check_unsubscribe_other,
    'change_owner': None,       # never allowed
}


def assert_error(answer, status: int, *secrets) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers['Content-Type'] == 'application/json'
    body = answer.json()
    assert body['error'] == ERROR_CODES[status]
    assert isinstance(body['detail'], str) and body['detail']
    for secret in secrets:
        assert secret not in answer.content


def test_matrix_is_complete():
    assert set(MATRIX) == set(REQUESTS) == set(CHECKS)
    assert all(len(row) == len(CALLERS) for row in MATRIX.values())


@pytest.mark.parametrize('endpoint, caller, status', [
    pytest.param(endpoint, caller, status, id=f'{endpoint}-{caller}')
    for endpoint, row in MATRIX.items() for caller, status in zip(CALLERS, row, strict=True)])
def test_access_matrix(shared_api, endpoint, caller, status):
    w = make_world(shared_api, caller)
    before = w.state()
    answer = REQUESTS[endpoint](w)
    if status < 400:
        assert answer.status_code == status, answer.text
        CHECKS[endpoint](w, answer)
    else:
        assert_error(answer, status, w.secret.encode(), w.content)
        assert w.state() == before
        assert before[0]['client_values']['secret'] == w.secret


@pytest.mark.parametrize('method, slug, body', [
    ('get', 'oaio_stampz/', None),
    ('get', 'changes/', None),
    ('get', 'changes/?since=0&wait=5', None),
    ('post', 'register/', {'oaio_id': 'anon', 'client_stamp': STAMP1, 'client_values': {}}),
    ('post', 'upload/', {'oaio_id': 'anon', 'client_stamp': STAMP2, 'server_stamp': STAMP1}),
    ('post', 'delete/', {'oaio_id': 'anon'}),
    ('post', 'subscribe/', {'oaio_id': 'anon', 'username': 'alice', 'access_right': 'r'}),
    ('get', 'user_subz/anon', None),
    ('get', 'user_subz/', None),
    ('post', 'wipe_user/', {'Uid': 'alice'}),
    ('get', 'csh_args/oaio', None),
    ('post', 'blobs/missing/', {'sha256': []}),
    ('get', f'files/anon/{STAMP1}/a.txt', None),
    ('put', f'files/anon/{STAMP1}/a.txt', b'content'),
    ('delete', f'files/anon/{STAMP1}/a.txt', None),
])
def test_anonymous_requests_get_401(shared_api, method, slug, body):
    alice = shared_api('alice')
    before = listed(alice)
    session = anonymous(shared_api)
    answer = session.request(method, slug, **({'data': body} if isinstance(body, bytes) else {'json': body}))
    assert_error(answer, 401)
    assert answer.json() == {'error': 'not_authenticated', 'detail': 'log in first (POST login/)'}
    assert listed(alice) == before
    assert 'anon' not in listed(alice)


@pytest.mark.parametrize('slug', ['current_stamp/', 'login/', 'logout/'])
def test_anonymous_may_use_the_login_endpoints(shared_api, slug):
    answer = shared_api('anonymous', login=False).get(slug)
    assert answer.status_code == 200, answer.text


def test_a_logged_out_session_is_anonymous(shared_api):
    session = shared_api('alice')
    assert session.get('oaio_stampz/').status_code == 200
    assert session.post('logout/').json() == {'detail': 'logged out'}
    assert_error(session.get('oaio_stampz/'), 401)
    assert_error(session.get('changes/'), 401)
    assert_error(session.post('register/', json={'oaio_id': 'after-logout', 'client_stamp': STAMP1}), 401)


@pytest.mark.parametrize('request_for', [
    pytest.param(lambda oaio_id: ('get', f'files/{quote(oaio_id)}/{STAMP1}/doc.txt', None), id='files_get'),
    pytest.param(lambda oaio_id: ('post', 'upload/', {'oaio_id': oaio_id, 'client_stamp': STAMP2,
                                                       'server_stamp': STAMP1, 'client_values': {}}), id='upload'),
    pytest.param(lambda oaio_id: ('post', 'delete/', {'oaio_id': oaio_id}), id='delete'),
    pytest.param(lambda oaio_id: ('post', 'subscribe/', {'oaio_id': oaio_id, 'username': 'bob',
                                                          'access_right': 'r'}), id='subscribe'),
])
def test_a_shared_object_looks_unknown_to_others(shared_api, request_for):
    """A non-subscriber cannot tell an existing object from a missing one: same 404, same words."""
    w = make_world(shared_api, 'none')
    details = []
    for oaio_id in (w.oaio_id, 'no-such-object'):
        method, slug, body = request_for(oaio_id)
        answer = w.caller.request(method, slug, json=body)
        assert_error(answer, 404, w.secret.encode(), w.content)
        details.append(answer.json()['detail'].replace(repr(oaio_id), 'ID'))
    assert details[0] == details[1]


@pytest.mark.parametrize('caller, target, status', [
    ('user', 'self', 200),
    ('user', 'other', 403),
    ('user', 'nobody', 403),        # non-staff learn nothing about other names
    ('staff', 'other', 200),
    ('staff', 'self', 200),
    ('staff', 'nobody', 404),
    ('anonymous', 'other', 401),
])
def test_wipe_user(shared_api, caller, target, status):
    number = next(_numbers)
    user, other = shared_api(f'wiper{number}'), shared_api(f'wipee{number}')
    oaio_id = f'wipe-test-{number}'
    assert other.post('register/', json={'oaio_id': oaio_id, 'client_stamp': STAMP1, 'client_values': {}}).ok
    assert other.post('subscribe/', json={'oaio_id': oaio_id, 'username': user.username, 'access_right': 'r'}).ok
    if caller == 'staff':
        session = shared_api(f'staff{number}', staff=True)
    else:
        session = user if caller == 'user' else anonymous(shared_api)
    name = {'self': session.username, 'other': other.username, 'nobody': f'nobody{number}'}[target]
    answer = session.post('wipe_user/', json={'Uid': name})
    if status != 200:
        assert_error(answer, status)
        assert oaio_id in listed(user) and oaio_id in listed(other)
        return
    assert answer.json() == {'detail': 'wiped'}
    assert_error(shared_api(name, login=False).login(), 401)
    if target == 'self':
        assert_error(session.get('oaio_stampz/'), 401)      # the wiped user's session is over
    if name == other.username:
        assert oaio_id not in listed(user)                  # the owner's objects went with the owner
    elif name == user.username:
        assert other.get(f'user_subz/{oaio_id}').json() == [{'username': other.username, 'access_right': 'C'}]
    else:
        assert oaio_id in listed(user) and oaio_id in listed(other)
