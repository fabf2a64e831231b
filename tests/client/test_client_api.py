"""Every public member of OaioClient against a live oaio-server, checked on the server through the raw
``api`` session, with the error paths: invalid arguments, wrong password, server unreachable."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from oaio.client import OaioClient, StoreLockedError, object_id
from oaio.client.protocol import check_stamp, now_stamp

from oaio_testing import PASSWORD, server_file, server_objects

STAMP1, STAMP2, STAMP3 = '20261125101010123456', '20261125101010123457', '20261125101010123458'


def assert_invalid(call, *args, **kwargs) -> Exception:
    """``call`` raises an exception that is both a ValueError and an AssertionError."""
    with pytest.raises(ValueError) as info:
        call(*args, **kwargs)
    assert isinstance(info.value, AssertionError), repr(info.value)
    return info.value


def server_rights(session, oaio_id: str) -> dict[str, str]:
    answer = session.get('user_subz/' + quote(oaio_id, safe=''))
    assert answer.ok, answer.text
    return {row['username']: row['access_right'] for row in answer.json()}


# registering ------------------------------------------------------------------------------------

def test_register_object_is_on_the_server_at_once_with_auto_sync(make_client, api):
    alice = make_client('alice', auto_sync=True)
    obj = alice.register_object({'title': 'first', 'n': 1})
    assert obj is not None, alice.error_message
    assert alice.error_message == ''
    assert obj.oaio_id.startswith('tests') and obj.client_stamp == obj.server_stamp
    held = server_objects(api('alice'))[obj.oaio_id]
    assert held['client_values'] == {'title': 'first', 'n': 1}
    assert held['client_stamp'] == obj.client_stamp
    assert (held['username'], held['device_id'], held['app_id']) == ('alice', 'dev1', 'tests')
    assert alice.client_objectz[obj.oaio_id].csh_access_right == 'C'


def test_register_object_with_stamp_and_id_waits_for_the_sync(make_client, api):
    alice = make_client('alice')
    obj = alice.register_object({'a': 1}, stamp=STAMP1, oaio_id='my-object')
    assert (obj.oaio_id, obj.client_stamp, obj.server_stamp) == ('my-object', STAMP1, '')
    assert server_objects(api('alice')) == {}
    assert alice.synchronize_with_server_if_online(), alice.error_message
    held = server_objects(api('alice'))['my-object']
    assert (held['client_stamp'], held['client_values']) == (STAMP1, {'a': 1})
    assert alice.client_objectz['my-object'].server_stamp == STAMP1
    error = assert_invalid(alice.register_object, {'a': 2}, oaio_id='my-object')
    assert 'registered already' in str(error)


@pytest.mark.parametrize('oaio_id', ['i' * 255, 'ö' * 127, 'a' * 251])
def test_ids_as_long_as_a_file_name_are_stored_and_synced(make_client, api, oaio_id):
    laptop = make_client('alice', 'laptop')
    assert laptop.register_object({'long': True}, oaio_id=oaio_id)
    assert laptop.synchronize_with_server_if_online(), laptop.error_message
    assert server_objects(api('alice'))[oaio_id]['client_values'] == {'long': True}
    laptop.close()
    assert make_client('alice', 'laptop').client_objectz[oaio_id].client_values == {'long': True}   # reloaded
    phone = make_client('alice', 'phone')
    assert phone.synchronize_with_server_if_online(), phone.error_message
    assert phone.client_objectz[oaio_id].client_values == {'long': True}


def test_register_object_id_of_another_users_object_returns_none(make_client, api):
    alice = make_client('alice', auto_sync=True)
    bob = make_client('bob', auto_sync=True)
    assert alice.register_object({'by': 'alice'}, oaio_id='taken') is not None
    assert bob.register_object({'by': 'bob'}, oaio_id='taken') is None
    assert 'taken' in bob.error_message and 'already registered' in bob.error_message
    assert 'taken' not in bob.client_objectz
    assert server_objects(api('alice'))['taken']['client_values'] == {'by': 'alice'}
    assert server_objects(api('bob')) == {}


def test_register_file_with_content_in_client_root(make_client, api):
    alice = make_client('alice', auto_sync=True)
    obj = alice.register_file('docs/note.txt', file_content=b'hello\n')
    assert obj is not None, alice.error_message
    assert obj.client_values == {'_file_paths': ['docs/note.txt']}
    local = alice.files_root(obj.oaio_id) / 'docs' / 'note.txt'
    assert local.read_bytes() == b'hello\n'
    assert Path(alice.client_root) in local.parents
    session = api('alice')
    assert server_objects(session)[obj.oaio_id]['client_values'] == {'_file_paths': ['docs/note.txt']}
    assert server_file(session, obj.oaio_id, obj.client_stamp, 'docs/note.txt') == b'hello\n'


def test_register_file_with_content_and_root_path(make_client, api, tmp_path):
    alice = make_client('alice', auto_sync=True)
    folder = tmp_path / 'mine'
    obj = alice.register_file('a.bin', file_content=b'\x00\x01binary', root_path=str(folder))
    assert obj is not None, alice.error_message
    assert (folder / 'a.bin').read_bytes() == b'\x00\x01binary'
    assert alice.files_root(obj.oaio_id) == folder
    assert obj.client_values == {'_file_paths': ['a.bin'], '_root_path': str(folder)}
    assert server_file(api('alice'), obj.oaio_id, obj.client_stamp, 'a.bin') == b'\x00\x01binary'


def test_register_existing_file_with_root_path(make_client, api, tmp_path):
    alice = make_client('alice', auto_sync=True)
    folder = tmp_path / 'photos'
    (folder / 'sub').mkdir(parents=True)
    (folder / 'sub' / 'pic.jpg').write_bytes(b'JPEG' * 1000)
    obj = alice.register_file('sub/pic.jpg', root_path=str(folder))
    assert obj is not None, alice.error_message
    assert (folder / 'sub' / 'pic.jpg').read_bytes() == b'JPEG' * 1000       # left as it was
    assert server_file(api('alice'), obj.oaio_id, obj.client_stamp, 'sub/pic.jpg') == b'JPEG' * 1000
    error = assert_invalid(alice.register_file, 'sub/missing.jpg', root_path=str(folder))
    assert 'missing.jpg' in str(error)


def test_register_existing_file_in_client_root(make_client, api):
    # without root_path the file must already lie where the client keeps the object's files:
    # client_root/filez/<the id the object will get>
    alice = make_client('alice', auto_sync=True)
    oaio_id = object_id('alice', 'dev1', 'tests', STAMP1, {'_file_paths': ['x.txt']})
    existing = Path(alice.client_root) / 'filez' / oaio_id / 'x.txt'
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b'was here')
    obj = alice.register_file('x.txt', stamp=STAMP1)
    assert obj is not None and obj.oaio_id == oaio_id, alice.error_message
    assert alice.files_root(oaio_id) / 'x.txt' == existing
    assert server_file(api('alice'), oaio_id, STAMP1, 'x.txt') == b'was here'
    assert_invalid(alice.register_file, 'nowhere.txt')


def test_register_folder(make_client, api, tmp_path):
    alice = make_client('alice', auto_sync=True)
    folder = tmp_path / 'project'
    files = {'README': b'read me', 'src/main.py': b'print(1)\n', 'src/pkg/deep.txt': b'deep', '.hidden': b''}
    for path, content in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    obj = alice.register_folder(str(folder))
    assert obj is not None, alice.error_message
    assert obj.client_values == {'_root_path': str(folder), '_file_paths': sorted(files)}
    session = api('alice')
    assert server_objects(session)[obj.oaio_id]['client_values']['_file_paths'] == sorted(files)
    for path, content in files.items():
        assert server_file(session, obj.oaio_id, obj.client_stamp, path) == content
    assert_invalid(alice.register_folder, str(tmp_path / 'no-such-folder'))


# updating ---------------------------------------------------------------------------------------

def test_update_object_merges_values_resets_and_checks_stamps(make_client, api):
    alice = make_client('alice', auto_sync=True)
    session = api('alice')
    obj = alice.register_object({'a': 1, 'b': 2}, stamp=STAMP1)
    updated = alice.update_object(obj.oaio_id, {'b': 3, 'c': 4})
    assert updated.client_values == {'a': 1, 'b': 3, 'c': 4} and updated.client_stamp > STAMP1
    assert server_objects(session)[obj.oaio_id]['client_values'] == {'a': 1, 'b': 3, 'c': 4}

    later = now_stamp()[:8] + '235959999999'           # today, just before midnight: newer than anything so far
    reset = alice.update_object(obj.oaio_id, {'only': True}, stamp=later, reset=True)
    assert reset.client_values == {'only': True} and reset.client_stamp == later
    held = server_objects(session)[obj.oaio_id]
    assert (held['client_stamp'], held['client_values']) == (later, {'only': True})

    for too_old in (later, updated.client_stamp, STAMP1):
        error = assert_invalid(alice.update_object, obj.oaio_id, {'x': 1}, stamp=too_old)
        assert 'not newer' in str(error)
    assert_invalid(alice.update_object, obj.oaio_id, {'x': 1}, stamp='20200101000000000000')   # before OLDEST_STAMP
    assert alice.client_objectz[obj.oaio_id].client_values == {'only': True}
    assert server_objects(session)[obj.oaio_id]['client_stamp'] == later


def test_update_file(make_client, api):
    alice = make_client('alice', auto_sync=True)
    session = api('alice')
    obj = alice.register_file('v.txt', file_content=b'one')
    two = alice.update_file(obj.oaio_id, file_content=b'two')
    assert alice.error_message == ''
    assert (alice.files_root(obj.oaio_id) / 'v.txt').read_bytes() == b'two'
    assert server_objects(session)[obj.oaio_id]['client_stamp'] == two.client_stamp
    assert server_file(session, obj.oaio_id, two.client_stamp, 'v.txt') == b'two'

    (alice.files_root(obj.oaio_id) / 'v.txt').write_bytes(b'edited in place')
    three = alice.update_file(obj.oaio_id)
    assert server_file(session, obj.oaio_id, three.client_stamp, 'v.txt') == b'edited in place'

    four = alice.update_file(obj.oaio_id, file_name='renamed.txt', file_content=b'four')
    assert four.client_values['_file_paths'] == ['renamed.txt']
    assert server_objects(session)[obj.oaio_id]['client_values']['_file_paths'] == ['renamed.txt']
    assert server_file(session, obj.oaio_id, four.client_stamp, 'renamed.txt') == b'four'
    assert_invalid(alice.update_file, obj.oaio_id, file_name='absent.txt')
    assert_invalid(alice.update_file, obj.oaio_id, file_name='../escape.txt', file_content=b'x')
    assert_invalid(alice.update_file, obj.oaio_id, file_content=b'five', stamp=four.client_stamp)
    assert (alice.files_root(obj.oaio_id) / 'renamed.txt').read_bytes() == b'four'     # a refused update writes nothing


def test_update_folder(make_client, api, tmp_path):
    alice = make_client('alice', auto_sync=True)
    session = api('alice')
    folder = tmp_path / 'f'
    (folder / 'd').mkdir(parents=True)
    (folder / 'keep.txt').write_bytes(b'keep')
    (folder / 'change.txt').write_bytes(b'old')
    (folder / 'd' / 'gone.txt').write_bytes(b'gone')
    obj = alice.register_folder(str(folder))
    (folder / 'change.txt').write_bytes(b'new')
    (folder / 'd' / 'gone.txt').unlink()
    (folder / 'd' / 'added.txt').write_bytes(b'added')
    updated = alice.update_folder(obj.oaio_id)
    assert alice.error_message == ''
    assert updated.client_values['_file_paths'] == ['change.txt', 'd/added.txt', 'keep.txt']
    held = server_objects(session)[obj.oaio_id]
    assert held['client_stamp'] == updated.client_stamp
    assert held['client_values']['_file_paths'] == ['change.txt', 'd/added.txt', 'keep.txt']
    assert server_file(session, obj.oaio_id, updated.client_stamp, 'change.txt') == b'new'
    assert server_file(session, obj.oaio_id, updated.client_stamp, 'd/added.txt') == b'added'


# synchronizing ----------------------------------------------------------------------------------

def test_synchronize_fetches_what_others_registered(make_client, api):
    alice = make_client('alice')
    session = api('alice', device='raw')
    put = session.request('put', f'files/raw-object/{STAMP1}/f.txt', data=b'from the wire')
    assert put.status_code == 201, put.text
    registered = session.post('register/', json={'oaio_id': 'raw-object', 'client_stamp': STAMP1,
                                                  'client_values': {'k': 'v', '_file_paths': ['f.txt']}})
    assert registered.ok, registered.text
    assert alice.last_sync_stamp == ''
    before = now_stamp()
    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert alice.error_message == ''
    obj = alice.client_objectz['raw-object']
    assert (obj.client_stamp, obj.server_stamp, obj.client_values) == \
        (STAMP1, STAMP1, {'k': 'v', '_file_paths': ['f.txt']})
    assert (obj.device_id, obj.csh_access_right) == ('raw', 'C')
    assert (alice.files_root('raw-object') / 'f.txt').read_bytes() == b'from the wire'
    assert check_stamp(alice.last_sync_stamp) >= before


def test_client_objectz_are_copies(make_client):
    alice = make_client('alice')
    obj = alice.register_object({'a': 1}, oaio_id='o')
    objectz = alice.client_objectz
    objectz['o'].client_values['a'] = 666
    objectz.pop('o')
    assert alice.client_objectz['o'].client_values == {'a': 1}
    obj.client_values['a'] = 777
    assert alice.client_objectz['o'].client_values == {'a': 1}


def test_last_sync_stamp_persists_and_checks_its_value(make_client):
    alice = make_client('alice')
    assert alice.last_sync_stamp == ''
    assert alice.synchronize_with_server_if_online(), alice.error_message
    stamp = alice.last_sync_stamp
    assert check_stamp(stamp)
    alice.close()
    again = make_client('alice')
    assert again.last_sync_stamp == stamp
    again.last_sync_stamp = STAMP2
    assert again.last_sync_stamp == STAMP2
    for bad in ('yesterday', '2026', '19991231235959000000', 20261125101010123456):
        assert_invalid(setattr, again, 'last_sync_stamp', bad)
    assert again.last_sync_stamp == STAMP2


def test_error_message_accumulates_and_resets(make_client, dead_host):
    alice = make_client('alice', host=dead_host)
    assert alice.error_message == ''
    alice.error_message = 'first'
    alice.error_message = 'second'
    assert alice.error_message == 'first\nsecond'
    alice.error_message = ''
    assert alice.error_message == ''
    assert not alice.synchronize_with_server_if_online()
    assert alice.error_message.count('unreachable') == 1         # a new round starts a new message
    assert not alice.synchronize_with_server_if_online()
    assert alice.error_message.count('unreachable') == 1


def test_a_good_sync_clears_the_error_of_a_bad_one(make_client, server):
    alice = make_client('alice')
    server.stop()
    assert not alice.synchronize_with_server_if_online()
    assert alice.error_message
    server.start()
    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert alice.error_message == ''


# sharing and access -----------------------------------------------------------------------------

def test_upsert_subscription_and_userz_access(make_client, api):
    alice = make_client('alice', auto_sync=True)
    for name in ('bob', 'carol', 'dave', 'eve'):
        api(name)
    obj = alice.register_object({'shared': True})
    pids = {name: alice.upsert_subscription(obj.oaio_id, name, right)
            for name, right in (('eve', 'r'), ('dave', 'D'), ('bob', 'r'), ('carol', 'U'))}
    assert all(isinstance(pid, int) and pid > 0 for pid in pids.values()), alice.error_message
    assert len(set(pids.values())) == 4
    assert alice.upsert_subscription(obj.oaio_id, 'eve') == pids['eve']      # default right r, same record
    assert alice.userz_access(obj.oaio_id) == [
        {'username': 'alice', 'access_right': 'C'}, {'username': 'dave', 'access_right': 'D'},
        {'username': 'carol', 'access_right': 'U'}, {'username': 'bob', 'access_right': 'r'},
        {'username': 'eve', 'access_right': 'r'}]
    assert server_rights(api('alice'), obj.oaio_id) == {'alice': 'C', 'dave': 'D', 'carol': 'U', 'bob': 'r', 'eve': 'r'}
    assert alice.upsert_subscription(obj.oaio_id, 'bob', 'U') == pids['bob']
    assert server_rights(api('bob'), obj.oaio_id)['bob'] == 'U'

    everyone = [{'username': name, 'access_right': 'x'} for name in ('alice', 'bob', 'carol', 'dave', 'eve')]
    assert alice.userz_access('') == everyone
    assert alice.userz_access('no-such-object') == everyone


def test_upsert_subscription_errors(make_client, api):
    alice = make_client('alice', auto_sync=True)
    api('bob')
    obj = alice.register_object({'a': 1})
    assert alice.upsert_subscription(obj.oaio_id, 'nobody', 'r') == 0
    assert 'nobody' in alice.error_message
    assert alice.upsert_subscription('not-registered', 'bob', 'r') == 0
    assert 'not-registered' in alice.error_message
    assert alice.upsert_subscription(obj.oaio_id, 'alice', 'r') == 0           # the owner keeps C
    assert alice.error_message
    assert_invalid(alice.upsert_subscription, obj.oaio_id, 'bob', 'W')
    assert_invalid(alice.upsert_subscription, obj.oaio_id, '', 'r')
    assert_invalid(alice.upsert_subscription, 'bad/id', 'bob', 'r')
    assert server_rights(api('alice'), obj.oaio_id) == {'alice': 'C'}


def test_unsubscribe(make_client, api):
    alice = make_client('alice', auto_sync=True)
    api('bob')
    obj = alice.register_object({'a': 1})
    assert alice.upsert_subscription(obj.oaio_id, 'bob', 'U')
    assert alice.unsubscribe(obj.oaio_id, 'bob') == ''
    assert server_rights(api('alice'), obj.oaio_id) == {'alice': 'C'}
    assert obj.oaio_id not in server_objects(api('bob'))
    assert alice.unsubscribe('not-registered', 'bob') != ''
    assert_invalid(alice.unsubscribe, 'bad\x00id', 'bob')


# deleting ---------------------------------------------------------------------------------------

def test_unregister_object(make_client, api):
    alice = make_client('alice', auto_sync=True)
    session = api('alice')
    obj = alice.register_file('f.txt', file_content=b'data')
    files = alice.files_root(obj.oaio_id)
    assert obj.oaio_id in server_objects(session)
    assert alice.unregister_object(obj.oaio_id) == ''
    assert alice.error_message == ''
    assert obj.oaio_id not in alice.client_objectz
    assert obj.oaio_id not in server_objects(session)
    assert not files.exists()
    message = alice.unregister_object(obj.oaio_id)
    assert 'not found' in message and message == alice.error_message


def test_unregister_object_keeps_or_wipes_files_under_a_root_path(make_client, api, tmp_path):
    alice = make_client('alice', auto_sync=True)
    session = api('alice')
    kept = alice.register_file('kept.txt', file_content=b'keep me', root_path=str(tmp_path / 'a'))
    wiped = alice.register_file('wiped.txt', file_content=b'wipe me', root_path=str(tmp_path / 'b'))
    assert alice.unregister_object(kept.oaio_id) == ''
    assert alice.unregister_object(wiped.oaio_id, wipe_files=True) == ''
    assert (tmp_path / 'a' / 'kept.txt').read_bytes() == b'keep me'
    assert not (tmp_path / 'b' / 'wiped.txt').exists()
    assert server_objects(session) == {}
    assert alice.client_objectz == {}


def test_unregister_object_offline_is_queued_and_sent_at_the_next_sync(make_client, api, server):
    alice = make_client('alice', auto_sync=True)
    session = api('alice')
    obj = alice.register_object({'a': 1})
    other = alice.register_object({'b': 2})
    server.stop()
    assert alice.unregister_object(obj.oaio_id) == ''                 # queued durably: not a failure
    assert 'unreachable' in alice.error_message                       # auto_sync tried and said why
    assert obj.oaio_id not in alice.client_objectz
    alice.close()                                                     # the queue is durable
    server.start()
    assert set(server_objects(session)) == {obj.oaio_id, other.oaio_id}
    again = make_client('alice')
    assert obj.oaio_id not in again.client_objectz
    assert again.synchronize_with_server_if_online(), again.error_message
    assert set(server_objects(session)) == {other.oaio_id}
    assert set(again.client_objectz) == {other.oaio_id}


def test_wipe_user(make_client, api, server):
    bob = make_client('bob', auto_sync=True)
    alice = make_client('alice', auto_sync=True)
    mine = bob.register_object({'bob': 1})
    theirs = alice.register_object({'alice': 1})
    assert alice.upsert_subscription(theirs.oaio_id, 'bob', 'r')
    assert bob.synchronize_with_server_if_online(), bob.error_message
    assert set(bob.client_objectz) == {mine.oaio_id, theirs.oaio_id}
    assert alice.wipe_user('bob') != ''                               # alice is no staff
    assert 'staff' in alice.error_message
    assert bob.wipe_user('bob') == ''
    assert bob.client_objectz == {}
    from oaio_testing import Api
    assert Api(server, 'bob').login().status_code == 401
    assert server_rights(api('alice'), theirs.oaio_id) == {'alice': 'C'}
    assert not bob.synchronize_with_server_if_online()
    assert 'wrong user name or password' in bob.error_message


# lifecycle --------------------------------------------------------------------------------------

def test_context_manager_logs_out_and_releases_the_client_root(server, api, tmp_path):
    api('alice')
    root = str(tmp_path / 'root')
    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests', device_id='d',
                    client_root=root, auto_sync=False) as alice:
        assert alice.synchronize_with_server_if_online(), alice.error_message
        cookies = requests.utils.dict_from_cookiejar(alice._api.session.cookies)
        assert requests.get(server.url + 'oaio_stampz/', cookies=cookies, timeout=30).status_code == 200
    assert requests.get(server.url + 'oaio_stampz/', cookies=cookies, timeout=30).status_code == 401
    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, client_root=root) as again:
        assert again.last_sync_stamp == alice.last_sync_stamp


def test_second_client_on_the_same_root_is_refused(make_client):
    alice = make_client('alice')
    with pytest.raises(StoreLockedError) as info:
        make_client('alice', client_root=alice.client_root)
    assert alice.client_root in str(info.value)
    assert alice.synchronize_with_server_if_online(), alice.error_message      # the first goes on


def test_client_root_placeholders(server, api, tmp_path, monkeypatch):
    api('alice')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path / 'xdg'))
    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests',
                    client_root='{usr}/oaio_root/') as alice:
        assert Path(alice.client_root) == tmp_path / 'xdg' / 'oaio_root'
    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests',
                    client_root='{home}/cache') as alice:
        assert Path(alice.client_root) == tmp_path / 'home' / 'cache'


# invalid arguments ------------------------------------------------------------------------------

def test_invalid_arguments_raise_value_and_assertion_errors(make_client):
    alice = make_client('alice')
    obj = alice.register_object({'a': 1}, oaio_id='o', stamp=STAMP1)
    for values in ([('a', 1)], 'a=1', None, {1: 'int key'}, {'_file_paths': 'not a list'},
                   {'_file_paths': ['../up']}, {'_file_paths': ['/abs']}, {'_name': 5}):
        assert_invalid(alice.register_object, values)
        assert_invalid(alice.update_object, 'o', values)
    for stamp in ('2026', 'x' * 20, '20261325101010123456', '20201125101010123456', 20261125101010123456):
        assert_invalid(alice.register_object, {'a': 1}, stamp=stamp)
        assert_invalid(alice.update_object, 'o', {'a': 1}, stamp=stamp)
        assert_invalid(alice.register_file, 'f.txt', file_content=b'', stamp=stamp)
    for oaio_id in ('a/b', '..', 'nul\x00', 'x' * 300, 5):
        assert_invalid(alice.register_object, {'a': 1}, oaio_id=oaio_id)
        assert_invalid(alice.upsert_subscription, oaio_id, 'bob')
        assert_invalid(alice.unsubscribe, oaio_id, 'bob')
        assert_invalid(alice.userz_access, oaio_id)
    for unknown in ('unknown', '', None):
        assert_invalid(alice.update_object, unknown, {'a': 2})
        assert_invalid(alice.update_file, unknown, file_content=b'x')
        assert_invalid(alice.update_folder, unknown)
    for file_name in ('', '/etc/passwd', '../x', 'a//b', 'a\x00b', None):
        assert_invalid(alice.register_file, file_name, file_content=b'x')
    assert_invalid(alice.register_file, 'f.txt', file_content='text, not bytes')
    assert_invalid(alice.update_object, 'o', {'a': 1}, stamp=STAMP1)       # not newer than its stamp
    assert alice.client_objectz == {'o': obj}
    assert list((Path(alice.client_root) / 'filez').rglob('*')) == []


@pytest.mark.parametrize('credentials', [
    None, 'alice:secret', ('alice', 'secret'), {}, {'username': 'alice'}, {'password': PASSWORD},
    {'username': '', 'password': PASSWORD}, {'username': 'alice', 'password': None},
    {'username': 42, 'password': PASSWORD}, {'username': None, 'password': PASSWORD}])
def test_bad_credentials_raise_value_and_assertion_errors(server, tmp_path, credentials):
    root = tmp_path / 'root'
    assert_invalid(OaioClient, server.host, credentials, app_id='tests', client_root=str(root))
    with OaioClient(server.host, {'username': 'x', 'password': 'y'}, client_root=str(root)):
        pass                                            # the failed attempts left no lock behind


# failures of the server or the network ----------------------------------------------------------

def test_wrong_password(make_client, api):
    api('alice')
    alice = make_client('alice', password='wrong password')
    obj = alice.register_object({'a': 1})
    assert alice.synchronize_with_server_if_online() is False
    assert 'alice' in alice.error_message and 'wrong user name or password' in alice.error_message
    assert alice.client_objectz[obj.oaio_id].pending
    assert alice.upsert_subscription(obj.oaio_id, 'alice') == 0
    assert 'wrong user name or password' in alice.error_message
    assert alice.userz_access('') == []
    assert server_objects(api('alice')) == {}


def test_server_unreachable(make_client, dead_host):
    alice = make_client('alice', host=dead_host, auto_sync=True)
    obj = alice.register_object({'offline': True})
    assert obj is not None and obj.pending
    assert 'unreachable' in alice.error_message and dead_host in alice.error_message
    assert alice.synchronize_with_server_if_online() is False
    assert 'unreachable' in alice.error_message and dead_host in alice.error_message
    assert alice.userz_access(obj.oaio_id) == []
    assert alice.upsert_subscription(obj.oaio_id, 'bob') == 0
    assert alice.unsubscribe(obj.oaio_id, 'bob') != ''
    assert alice.wipe_user('alice') != ''
    assert alice.client_objectz[obj.oaio_id].client_values == {'offline': True}
    assert alice.last_sync_stamp == ''


def test_local_changes_made_while_the_server_is_down_are_uploaded_when_it_is_back(make_client, api, server,
                                                                                    tmp_path):
    session = api('alice')
    alice = make_client('alice', auto_sync=True)
    synced = alice.register_object({'v': 1})
    server.stop()
    edited = alice.update_object(synced.oaio_id, {'v': 2})
    note = alice.register_file('note.txt', file_content=b'written offline')
    (tmp_path / 'dir').mkdir()
    (tmp_path / 'dir' / 'x').write_bytes(b'x')
    folder = alice.register_folder(str(tmp_path / 'dir'))
    assert 'unreachable' in alice.error_message
    assert all(obj.pending for obj in alice.client_objectz.values())
    server.start()
    assert alice.synchronize_with_server_if_online(), alice.error_message
    held = server_objects(session)
    assert set(held) == {synced.oaio_id, note.oaio_id, folder.oaio_id}
    head = held[synced.oaio_id]
    assert (head['client_stamp'], head['client_values']) == (edited.client_stamp, {'v': 2})
    assert server_file(session, note.oaio_id, note.client_stamp, 'note.txt') == b'written offline'
    assert server_file(session, folder.oaio_id, folder.client_stamp, 'x') == b'x'
    assert not any(obj.pending for obj in alice.client_objectz.values())
