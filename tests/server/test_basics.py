"""The basic round trip of the wire protocol against a live server."""
STAMP1, STAMP2 = '20261125101010123456', '20261125101010123457'


def test_register_upload_listing(api):
    alice = api('alice')
    registered = alice.post('register/', json={'oaio_id': 'notes', 'client_stamp': STAMP1, 'client_values': {'a': 1}})
    assert registered.status_code == 200, registered.text
    assert registered.json()['csh_access_right'] == 'C'
    uploaded = alice.post('upload/', json={'oaio_id': 'notes', 'client_stamp': STAMP2, 'server_stamp': STAMP1,
                                           'client_values': {'a': 2}})
    assert uploaded.status_code == 200, uploaded.text
    listing = alice.get('oaio_stampz/').json()
    assert [(o['oaio_id'], o['client_stamp'], o['client_values']) for o in listing] == [('notes', STAMP2, {'a': 2})]


def test_files_round_trip(api):
    alice = api('alice')
    put = alice.request('put', f'files/doc/{STAMP1}/dir/a.txt', data=b'hello')
    assert put.status_code == 201, put.text
    registered = alice.post('register/', json={'oaio_id': 'doc', 'client_stamp': STAMP1,
                                                'client_values': {'_file_paths': ['dir/a.txt']}})
    assert registered.status_code == 200, registered.text
    got = alice.get(f'files/doc/{STAMP1}/dir/a.txt')
    assert got.status_code == 200 and got.content == b'hello'
