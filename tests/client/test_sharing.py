"""Two devices of one user, and two users sharing objects with each access right, against a live
oaio-server; what the server holds is checked through the raw ``api`` session."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from oaio.client import AccessDenied

from oaio_testing import server_file, server_objects


def synced(*clients) -> None:
    for client in clients:
        assert client.synchronize_with_server_if_online(), client.error_message


@pytest.fixture
def shared(make_client, api):
    """Alice's object with a file, and a function that shares it with bob and returns bob's client."""
    alice = make_client('alice', 'alice-laptop')
    obj = alice.register_file('doc.txt', file_content=b'by alice')
    obj = alice.update_object(obj.oaio_id, {'title': 'shared'})
    synced(alice)
    api('bob')

    def share(right: str):
        assert alice.upsert_subscription(obj.oaio_id, 'bob', right), alice.error_message
        bob = make_client('bob', 'bob-phone')
        synced(bob)
        got = bob.client_objectz[obj.oaio_id]
        assert got.csh_access_right == right
        assert got.client_values == {'title': 'shared', '_file_paths': ['doc.txt']}
        assert (bob.files_root(obj.oaio_id) / 'doc.txt').read_bytes() == b'by alice'
        return bob
    return alice, obj.oaio_id, share


# two devices of one user ------------------------------------------------------------------------

def test_two_devices_of_one_user_see_each_others_edits(make_client, api):
    laptop, phone = make_client('alice', 'laptop'), make_client('alice', 'phone')
    obj = laptop.register_file('notes/today.md', file_content=b'# today\n')
    obj = laptop.update_object(obj.oaio_id, {'_name': 'Today', 'tags': ['a']})
    synced(laptop, phone)
    got = phone.client_objectz[obj.oaio_id]
    assert got.client_values == {'_name': 'Today', 'tags': ['a'], '_file_paths': ['notes/today.md']}
    assert (got.client_stamp, got.server_stamp, got.device_id) == (obj.client_stamp, obj.client_stamp, 'laptop')
    assert (phone.files_root(obj.oaio_id) / 'notes' / 'today.md').read_bytes() == b'# today\n'

    edited = phone.update_object(obj.oaio_id, {'tags': ['a', 'b']})
    phone.update_file(obj.oaio_id, file_content=b'# today\n- buy milk\n')
    synced(phone, laptop)
    got = laptop.client_objectz[obj.oaio_id]
    assert got.client_values == {'_name': 'Today', 'tags': ['a', 'b'], '_file_paths': ['notes/today.md']}
    assert got.client_stamp > edited.client_stamp and got.device_id == 'phone'
    assert (laptop.files_root(obj.oaio_id) / 'notes' / 'today.md').read_bytes() == b'# today\n- buy milk\n'
    held = server_objects(api('alice'))[obj.oaio_id]
    assert held['client_stamp'] == got.client_stamp
    assert server_file(api('alice'), obj.oaio_id, got.client_stamp, 'notes/today.md') == b'# today\n- buy milk\n'

    phone.update_file(obj.oaio_id, file_name='renamed.md', file_content=b'renamed')
    synced(phone, laptop)
    assert laptop.client_objectz[obj.oaio_id].file_paths == ['renamed.md']
    assert (laptop.files_root(obj.oaio_id) / 'renamed.md').read_bytes() == b'renamed'
    assert not (laptop.files_root(obj.oaio_id) / 'notes' / 'today.md').exists()

    laptop_files = laptop.files_root(obj.oaio_id)
    assert phone.unregister_object(obj.oaio_id) == ''
    synced(phone, laptop)
    assert laptop.client_objectz == {} and phone.client_objectz == {}
    assert not laptop_files.exists()
    assert server_objects(api('alice')) == {}


def test_a_folder_object_reaches_the_other_device(make_client, tmp_path):
    laptop, phone = make_client('alice', 'laptop'), make_client('alice', 'phone')
    folder = tmp_path / 'music'
    (folder / 'album').mkdir(parents=True)
    (folder / 'album' / 'one.ogg').write_bytes(b'1' * 100_000)
    (folder / 'list.m3u').write_bytes(b'album/one.ogg\n')
    obj = laptop.register_folder(str(folder))
    synced(laptop, phone)
    root = phone.files_root(obj.oaio_id)
    assert (root / 'album' / 'one.ogg').read_bytes() == b'1' * 100_000
    assert (root / 'list.m3u').read_bytes() == b'album/one.ogg\n'
    (root / 'list.m3u').write_bytes(b'changed on the phone\n')
    phone.update_folder(obj.oaio_id)
    synced(phone, laptop)
    assert (folder / 'list.m3u').read_bytes() == b'changed on the phone\n'


def test_a_change_of_a_values_json_type_survives_a_merge(make_client, api):
    laptop, phone = make_client('alice', 'laptop'), make_client('alice', 'phone')
    obj = laptop.register_object({'flag': 1, 'count': 0})
    synced(laptop, phone)
    laptop.update_object(obj.oaio_id, {'flag': True})             # 1 == True in Python, not in JSON
    phone.update_object(obj.oaio_id, {'count': 1})
    synced(phone, laptop, phone)
    for client in (laptop, phone):
        values = client.client_objectz[obj.oaio_id].client_values
        assert values == {'flag': True, 'count': 1} and values['flag'] is True
    assert server_objects(api('alice'))[obj.oaio_id]['client_values']['flag'] is True


def test_a_conflict_copy_of_a_long_file_name_syncs(make_client, api):
    laptop, phone = make_client('alice', 'laptop'), make_client('alice', 'phone')
    name = 'n' * 240 + '.txt'
    obj = laptop.register_file(name, file_content=b'base')
    synced(laptop, phone)
    laptop.update_file(obj.oaio_id, file_content=b'laptop')
    phone.update_file(obj.oaio_id, file_content=b'phone')
    synced(phone)
    assert laptop.synchronize_with_server_if_online(), laptop.error_message
    assert 'changed on two devices' in laptop.error_message
    synced(phone)
    paths = laptop.client_objectz[obj.oaio_id].file_paths
    assert len(paths) == 2 and name in paths
    assert phone.client_objectz[obj.oaio_id].file_paths == paths
    copy = next(path for path in paths if path != name)
    for client in (laptop, phone):
        assert (client.files_root(obj.oaio_id) / name).read_bytes() == b'phone'
        assert (client.files_root(obj.oaio_id) / copy).read_bytes() == b'laptop'


# two users, each access right -------------------------------------------------------------------

def test_read_right_cannot_change_the_object(shared, api):
    alice, oaio_id, share = shared
    bob = share('r')
    with pytest.raises(AccessDenied):
        bob.update_object(oaio_id, {'title': 'by bob'})
    with pytest.raises(AccessDenied):
        bob.update_file(oaio_id, file_content=b'by bob')
    assert (bob.files_root(oaio_id) / 'doc.txt').read_bytes() == b'by alice'
    assert bob.client_objectz[oaio_id].client_values['title'] == 'shared'
    assert 'does not allow' in bob.unregister_object(oaio_id)
    assert oaio_id in bob.client_objectz
    assert bob.upsert_subscription(oaio_id, 'alice', 'r') == 0
    synced(bob)
    held = server_objects(api('alice'))[oaio_id]
    assert held['client_values']['title'] == 'shared' and held['username'] == 'alice'

    alice.update_object(oaio_id, {'title': 'alice again'})          # bob still sees the owner's edits
    synced(alice, bob)
    assert bob.client_objectz[oaio_id].client_values['title'] == 'alice again'


def test_update_right_can_update_but_not_delete(shared, api, make_client):
    alice, oaio_id, share = shared
    bob = share('U')
    edited = bob.update_object(oaio_id, {'title': 'by bob'})
    bob.update_file(oaio_id, file_content=b'by bob')
    synced(bob)
    held = server_objects(api('alice'))[oaio_id]
    assert held['client_values'] == {'title': 'by bob', '_file_paths': ['doc.txt']}
    assert held['client_stamp'] > edited.client_stamp and held['username'] == 'bob'
    assert server_file(api('alice'), oaio_id, held['client_stamp'], 'doc.txt') == b'by bob'
    synced(alice)
    assert alice.client_objectz[oaio_id].client_values['title'] == 'by bob'
    assert (alice.files_root(oaio_id) / 'doc.txt').read_bytes() == b'by bob'

    message = bob.unregister_object(oaio_id)
    assert message and message == bob.error_message and "'U'" in message
    assert oaio_id in bob.client_objectz
    assert oaio_id in server_objects(api('alice'))
    api('carol')
    assert bob.upsert_subscription(oaio_id, 'carol', 'r') == 0 and bob.error_message
    assert oaio_id not in server_objects(api('carol'))


def test_delete_right_can_delete(shared, api):
    alice, oaio_id, share = shared
    bob = share('D')
    alice_files = alice.files_root(oaio_id)
    bob.update_object(oaio_id, {'title': 'by bob'})
    synced(bob)
    assert bob.unregister_object(oaio_id) == ''
    synced(bob)
    assert server_objects(api('alice')) == {}
    assert server_objects(api('bob')) == {}
    synced(alice)
    assert alice.client_objectz == {}
    assert not alice_files.exists()


def test_create_right_can_share_further(shared, api, make_client):
    alice, oaio_id, share = shared
    bob = share('C')
    api('carol')
    assert bob.upsert_subscription(oaio_id, 'carol', 'U') > 0, bob.error_message
    carol = make_client('carol', 'carol-pc')
    synced(carol)
    assert carol.client_objectz[oaio_id].csh_access_right == 'U'
    carol.update_object(oaio_id, {'by': 'carol'})
    synced(carol, alice)
    assert alice.client_objectz[oaio_id].client_values['by'] == 'carol'
    assert {row['username']: row['access_right'] for row in bob.userz_access(oaio_id)} == {
        'alice': 'C', 'bob': 'C', 'carol': 'U'}
    assert bob.unsubscribe(oaio_id, 'carol') == ''
    synced(carol)
    assert oaio_id not in carol.client_objectz


def test_unsubscription_removes_the_object_at_the_next_sync(shared, api):
    alice, oaio_id, share = shared
    bob = share('r')
    files = bob.files_root(oaio_id)
    assert alice.unsubscribe(oaio_id, 'bob') == ''
    assert oaio_id in bob.client_objectz                          # nothing happens before the sync
    synced(bob)
    assert oaio_id not in bob.client_objectz
    assert not files.exists()
    assert oaio_id in server_objects(api('alice'))


def test_unsubscribing_oneself(shared, api):
    alice, oaio_id, share = shared
    bob = share('U')
    assert bob.unsubscribe(oaio_id, 'bob') == ''
    assert oaio_id not in bob.client_objectz
    assert oaio_id not in server_objects(api('bob'))
    synced(bob)
    assert oaio_id not in bob.client_objectz
    assert [row['username'] for row in alice.userz_access(oaio_id)] == ['alice']


def test_lost_right_keeps_pending_edits_and_stops_uploads(shared, api):
    alice, oaio_id, share = shared
    bob = share('U')
    bob.update_object(oaio_id, {'title': 'bob offline'})
    bob.update_file(oaio_id, file_content=b'bob offline')           # not synced yet
    assert alice.upsert_subscription(oaio_id, 'bob', 'r')
    assert bob.synchronize_with_server_if_online() is False
    assert oaio_id in bob.error_message and "'r'" in bob.error_message and 'not uploaded' in bob.error_message
    kept = bob.client_objectz[oaio_id]
    assert kept.pending and kept.csh_access_right == 'r'
    assert kept.client_values == {'title': 'bob offline', '_file_paths': ['doc.txt']}
    assert (bob.files_root(oaio_id) / 'doc.txt').read_bytes() == b'bob offline'
    assert bob.sync_state(oaio_id) == 'error'
    held = server_objects(api('alice'))[oaio_id]
    assert held['client_values']['title'] == 'shared' and held['username'] == 'alice'

    bob.synchronize_with_server_if_online()                         # still nothing goes up
    assert server_objects(api('alice'))[oaio_id]['client_values']['title'] == 'shared'
    assert bob.client_objectz[oaio_id].client_values['title'] == 'bob offline'

    assert alice.upsert_subscription(oaio_id, 'bob', 'U')           # the right is back: the edits go up
    synced(bob)
    held = server_objects(api('alice'))[oaio_id]
    assert held['client_values']['title'] == 'bob offline' and held['username'] == 'bob'
    assert server_file(api('alice'), oaio_id, held['client_stamp'], 'doc.txt') == b'bob offline'


def test_lost_subscription_keeps_pending_edits(shared, api):
    alice, oaio_id, share = shared
    bob = share('U')
    bob.update_object(oaio_id, {'title': 'bob offline'})
    assert alice.unsubscribe(oaio_id, 'bob') == ''
    assert bob.synchronize_with_server_if_online() is False
    assert oaio_id in bob.error_message and 'no longer shared' in bob.error_message
    assert bob.client_objectz[oaio_id].client_values['title'] == 'bob offline'
    assert (bob.files_root(oaio_id) / 'doc.txt').read_bytes() == b'by alice'
    assert server_objects(api('alice'))[oaio_id]['client_values']['title'] == 'shared'


def test_remote_delete_keeps_pending_edits(shared, api):
    alice, oaio_id, share = shared
    bob = share('D')
    alice.update_object(oaio_id, {'title': 'alice offline'})
    assert bob.unregister_object(oaio_id) == ''
    synced(bob)
    assert alice.synchronize_with_server_if_online() is False
    assert 'deleted' in alice.error_message and oaio_id in alice.error_message
    assert alice.client_objectz[oaio_id].client_values['title'] == 'alice offline'
    assert (alice.files_root(oaio_id) / 'doc.txt').read_bytes() == b'by alice'
    held = server_objects(api('alice'))[oaio_id]                     # registered again with the edits
    assert held['client_values']['title'] == 'alice offline'
    assert server_file(api('alice'), oaio_id, held['client_stamp'], 'doc.txt') == b'by alice'


# waiting for remote changes ---------------------------------------------------------------------

def test_wait_for_remote_changes_returns_what_another_device_uploaded(make_client):
    laptop, phone = make_client('alice', 'laptop'), make_client('alice', 'phone')
    synced(laptop, phone)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(laptop.wait_for_remote_changes, 55)
        obj = phone.register_file('new.txt', file_content=b'from the phone')
        synced(phone)
        changed = waiting.result(timeout=120)
    assert changed == [obj.oaio_id]
    assert laptop.client_objectz[obj.oaio_id].client_values == {'_file_paths': ['new.txt']}
    assert (laptop.files_root(obj.oaio_id) / 'new.txt').read_bytes() == b'from the phone'

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(laptop.wait_for_remote_changes, 55)
        phone.update_object(obj.oaio_id, {'seen': True})
        synced(phone)
        assert waiting.result(timeout=120) == [obj.oaio_id]
    assert laptop.client_objectz[obj.oaio_id].client_values['seen'] is True
    assert laptop.wait_for_remote_changes(0.2) == []


def test_wait_for_remote_changes_sees_another_users_share(make_client, api):
    alice, bob = make_client('alice'), make_client('bob')
    obj = alice.register_object({'for': 'bob'})
    synced(alice, bob)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(bob.wait_for_remote_changes, 55)
        assert alice.upsert_subscription(obj.oaio_id, 'bob', 'r')
        assert waiting.result(timeout=120) == [obj.oaio_id]
    assert bob.client_objectz[obj.oaio_id].client_values == {'for': 'bob'}
