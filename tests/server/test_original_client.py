"""The original client library ``ae.oaio_client`` against our server, unchanged: objects without files.

Each test drives ``ae.oaio_client.OaioClient`` (the PyPI package) over real HTTP against a live
``oaio-server`` process and checks the result on the server through the ``api`` fixture too.
The clients' ``__del__`` logs out; the ``original`` fixture lets that happen while the server still
runs, so that the server fixture's check of its log covers the logout as well.

The original client records only the status of a failed request (``<Response [403]>``), not its
JSON body: it tests the response's truth value, which is False for any 4xx/5xx.
"""
import gc
import inspect
import os

import pytest
import requests
from ae.oaio_client import OaioClient

APP = 'origtests'


@pytest.fixture
def password(server) -> str:
    """The password ``server.adduser`` and the ``api`` fixture give users (read from the fixture, not
    imported: more than one test directory has a module named ``conftest``)."""
    return inspect.signature(server.adduser).parameters['password'].default


@pytest.fixture
def original(server, tmp_path, password):
    """A factory: ``original('alice', 'laptop')`` is an OaioClient of an existing user on its own client root."""
    clients = []

    def make(username: str, device: str = 'laptop', password: str = password) -> OaioClient:
        root = tmp_path / f'client-{username}-{device}'
        client = OaioClient(server.host, {'username': username, 'password': password}, app_id=APP,
                            device_id=device, client_root=str(root))
        clients.append(client)
        return client

    yield make
    clients.clear()         # the tests' own references are gone by now: __del__ logs out against the live server
    gc.collect()


def heads(session) -> dict:
    """The server's listing for a logged-in ``api`` session: {oaio_id: object dict}."""
    answer = session.get('oaio_stampz/')
    assert answer.status_code == 200, answer.text
    return {obj['oaio_id']: obj for obj in answer.json()}


def test_register_and_sync(api, original):
    alice_api = api('alice')
    alice = original('alice')
    assert alice.synchronize_with_server_if_online(), alice.error_message

    obj = alice.register_object({'_name': 'My notes', 'text': 'hello'})
    assert obj is not None, alice.error_message
    assert alice.error_message == ''
    assert obj.oaio_id == f'{APP}⫻alice﹫laptop⁄My␣notes⁄{obj.client_stamp}'     # the original id, non-ASCII
    synced = alice.client_objectz[obj.oaio_id]         # reloaded from the client's disk by the sync
    assert synced.server_stamp == synced.client_stamp == obj.client_stamp
    assert synced.server_values == synced.client_values == {'_name': 'My notes', 'text': 'hello'}

    stored = heads(alice_api)[obj.oaio_id]
    assert set(stored) == {'oaio_id', 'client_stamp', 'server_stamp', 'client_values', 'server_values', 'csh_id',
                           'username', 'device_id', 'app_id', 'csh_access_right'}
    assert stored['client_stamp'] == obj.client_stamp
    assert stored['client_values'] == {'_name': 'My notes', 'text': 'hello'}
    assert (stored['username'], stored['device_id'], stored['app_id']) == ('alice', 'laptop', APP)
    assert stored['csh_access_right'] == 'C'
    assert stored['csh_id'] == 'Digi'           # the original client's default storage host id, stored as sent

    assert alice.synchronize_with_server_if_online(), alice.error_message      # nothing to do: still fine
    assert os.path.isfile(os.path.join(alice.client_root, 'objz', obj.oaio_id))


def test_update_is_seen_by_another_device(api, original):
    alice_api = api('alice')
    laptop, phone = original('alice', 'laptop'), original('alice', 'phone')
    obj = laptop.register_object({'_name': 'list', 'milk': 1})
    assert obj is not None, laptop.error_message

    assert phone.synchronize_with_server_if_online(), phone.error_message
    assert phone.client_objectz[obj.oaio_id].client_values == {'_name': 'list', 'milk': 1}

    updated = laptop.update_object(obj.oaio_id, {'milk': 2, 'eggs': 6})
    assert laptop.error_message == ''
    assert updated.client_stamp > obj.client_stamp
    assert laptop.client_objectz[obj.oaio_id].server_stamp == updated.client_stamp
    head = heads(alice_api)[obj.oaio_id]
    assert head['client_stamp'] == updated.client_stamp
    assert head['client_values'] == {'_name': 'list', 'milk': 2, 'eggs': 6}

    assert phone.synchronize_with_server_if_online(), phone.error_message
    seen = phone.client_objectz[obj.oaio_id]
    assert (seen.client_stamp, seen.client_values) == (updated.client_stamp, {'_name': 'list', 'milk': 2, 'eggs': 6})

    phone.update_object(obj.oaio_id, {'eggs': 12})                 # and back the other way, based on the new head
    assert phone.error_message == ''
    head = heads(alice_api)[obj.oaio_id]
    assert (head['device_id'], head['client_values']['eggs']) == ('phone', 12)
    assert laptop.synchronize_with_server_if_online(), laptop.error_message
    assert laptop.client_objectz[obj.oaio_id].client_values['eggs'] == 12


def test_share_read_then_update(api, original):
    api('alice')
    bob_api = api('bob')
    alice, bob = original('alice'), original('bob', 'desktop')
    obj = alice.register_object({'_name': 'plan', 'step': 1})
    assert obj is not None, alice.error_message

    pid = alice.upsert_subscription(obj.oaio_id, 'bob', 'r')
    assert pid > 0, alice.error_message
    assert heads(bob_api)[obj.oaio_id]['csh_access_right'] == 'r'
    assert bob.synchronize_with_server_if_online(), bob.error_message
    assert bob.client_objectz[obj.oaio_id].client_values == {'_name': 'plan', 'step': 1}
    assert bob.client_objectz[obj.oaio_id].csh_access_right == 'r'

    bob.update_object(obj.oaio_id, {'step': 2})                    # read only: the server refuses the upload
    assert '<Response [403]>' in bob.error_message
    assert not bob.synchronize_with_server_if_online()
    assert heads(bob_api)[obj.oaio_id]['client_values']['step'] == 1

    assert alice.upsert_subscription(obj.oaio_id, 'bob', 'U') == pid  # the same subscription, right changed
    assert bob.synchronize_with_server_if_online(), bob.error_message  # the pending upload goes through now
    head = heads(bob_api)[obj.oaio_id]
    assert (head['client_values']['step'], head['username'], head['csh_access_right']) == (2, 'bob', 'U')

    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert alice.client_objectz[obj.oaio_id].client_values == {'_name': 'plan', 'step': 2}


def test_userz_access(api, original):
    api('alice'), api('bob'), api('carol')
    alice = original('alice')
    obj = alice.register_object({'_name': 'shared'})
    assert obj is not None, alice.error_message
    assert alice.upsert_subscription(obj.oaio_id, 'carol', 'r')
    assert alice.upsert_subscription(obj.oaio_id, 'bob', 'U')

    assert alice.userz_access(obj.oaio_id) == [{'username': 'alice', 'access_right': 'C'},
                                               {'username': 'bob', 'access_right': 'U'},
                                               {'username': 'carol', 'access_right': 'r'}]
    everybody = [{'username': name, 'access_right': 'x'} for name in ('alice', 'bob', 'carol')]
    assert alice.userz_access('') == everybody                       # an unregistered id: every user with x
    assert alice.error_message == ''


def test_unsubscribe(api, original):
    alice_api = api('alice')
    bob_api, carol_api = api('bob'), api('carol')
    alice, bob = original('alice'), original('bob')
    obj = alice.register_object({'_name': 'news'})
    assert obj is not None, alice.error_message
    assert alice.upsert_subscription(obj.oaio_id, 'bob', 'r') and alice.upsert_subscription(obj.oaio_id, 'carol', 'r')
    assert bob.synchronize_with_server_if_online(), bob.error_message
    assert obj.oaio_id in bob.client_objectz

    assert bob.unsubscribe(obj.oaio_id, 'bob') == ''                 # oneself, with right r
    assert obj.oaio_id not in bob.client_objectz
    assert heads(bob_api) == {}
    assert alice.unsubscribe(obj.oaio_id, 'carol') == ''             # the owner removes another user
    assert heads(carol_api) == {}
    assert [row['username'] for row in alice.userz_access(obj.oaio_id)] == ['alice']
    assert bob.synchronize_with_server_if_online(), bob.error_message
    assert obj.oaio_id not in bob.client_objectz
    assert obj.oaio_id in heads(alice_api)


def test_unregister(api, original):
    alice_api, bob_api = api('alice'), api('bob')
    alice, bob = original('alice'), original('bob')
    obj = alice.register_object({'_name': 'old'})
    assert obj is not None, alice.error_message
    assert alice.upsert_subscription(obj.oaio_id, 'bob', 'U')
    assert bob.synchronize_with_server_if_online(), bob.error_message

    message = bob.unregister_object(obj.oaio_id)                   # U may update but not delete
    assert '<Response [403]>' in message
    assert obj.oaio_id in heads(alice_api)

    assert alice.unregister_object(obj.oaio_id) == ''
    assert heads(alice_api) == {} and heads(bob_api) == {}
    assert not os.path.exists(os.path.join(alice.client_root, 'objz', obj.oaio_id))
    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert alice.client_objectz == {}


def test_wipe_user(server, api, original):
    alice_api = api('alice')
    api('bob')
    alice, bob = original('alice'), original('bob')
    obj = bob.register_object({'_name': 'bobs'})
    assert obj is not None, bob.error_message
    assert bob.upsert_subscription(obj.oaio_id, 'alice', 'r')
    assert obj.oaio_id in heads(alice_api)

    message = alice.wipe_user('bob')                               # not staff: only oneself
    assert '<Response [403]>' in message
    assert bob.wipe_user('bob') == ''
    assert heads(alice_api) == {}
    assert [row['username'] for row in alice.userz_access('')] == ['alice']
    relogin = original('bob', 'other')
    assert not relogin.synchronize_with_server_if_online()
    assert '<Response [401]>' in relogin.error_message


def test_unicode_user_and_device(api, original):
    juergen_api = api('jürgen')
    client = original('jürgen', 'tablette-ü')
    obj = client.register_object({'_name': 'Grüße', 'ß': 'ä'})
    assert obj is not None, client.error_message
    head = heads(juergen_api)[obj.oaio_id]
    assert (head['username'], head['device_id'], head['client_values']) == ('jürgen', 'tablette-ü',
                                                                            {'_name': 'Grüße', 'ß': 'ä'})
    assert client.userz_access(obj.oaio_id) == [{'username': 'jürgen', 'access_right': 'C'}]


def test_wrong_password(server, original):
    server.adduser('alice')
    client = original('alice', password='not the password')
    assert client.synchronize_with_server_if_online() is False
    assert "authentication error" in client.error_message
    assert '<Response [401]>' in client.error_message
    assert client.register_object({'_name': 'offline'}) is None     # kept locally, not on the server
    assert os.listdir(os.path.join(client.client_root, 'objz'))


def test_logout_in_del(server, api, original, password):
    api('alice')
    client = original('alice')
    assert client.synchronize_with_server_if_online(), client.error_message
    session_id = client.session.cookies['sessionid']
    del client
    gc.collect()            # the fixture still holds the client: its __del__ runs at teardown …
    stale = requests.get(server.url + 'oaio_stampz/', cookies={'sessionid': session_id}, timeout=30)
    assert stale.status_code == 200                                # … so the session is still valid here

    second = OaioClient(server.host, {'username': 'alice', 'password': password}, app_id=APP, device_id='phone',
                        client_root=str(server.data.parent / 'client-del'))
    assert second.synchronize_with_server_if_online(), second.error_message
    session_id = second.session.cookies['sessionid']
    del second
    gc.collect()                                                   # __del__: POST logout/
    stale = requests.get(server.url + 'oaio_stampz/', cookies={'sessionid': session_id}, timeout=30)
    assert stale.status_code == 401 and stale.json()['error'] == 'not_authenticated'
    assert 'POST /api/logout/ HTTP/1.1" 200' in server.log()


def test_relogin_after_the_session_ended(server, api, original):
    """A session that ends on the server (expiry, logout elsewhere) makes the client log in again."""
    alice_api = api('alice')
    client = original('alice')
    assert client.synchronize_with_server_if_online(), client.error_message
    ended = requests.Session()
    ended.cookies.update(client.session.cookies)
    assert ended.post(server.url + 'logout/', headers={'X-CSRFToken': ended.cookies['csrftoken']}, timeout=30).ok
    assert alice_api.post('register/', json={'oaio_id': 'from-elsewhere', 'client_stamp': '20261125101010123456',
                                             'client_values': {'n': 1}}).status_code == 200

    assert client.synchronize_with_server_if_online(), client.error_message
    assert client.client_objectz['from-elsewhere'].client_values == {'n': 1}
