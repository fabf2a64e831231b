"""Values that JSON cannot hold are refused at the call with ProtocolError and leave the client as it
was: ``update_object(id, {'when': datetime.now()})`` used to raise TypeError, keep the bad value in
memory and make every later call fail until a new client was made."""
from __future__ import annotations

import datetime

import pytest

from oaio.client import ProtocolError


@pytest.mark.parametrize('bad', [datetime.datetime(2026, 12, 2, 8, 0), (1, 2), {1, 2}, b'raw', {1: 'int key'}],
                         ids=['datetime', 'tuple', 'set', 'bytes', 'int-key'])
def test_non_json_values_are_refused_and_the_client_stays_usable(make_client, bad):
    client = make_client('alice', auto_sync=True)
    note = client.register_object({'_name': 'note', 'items': ['milk']})
    assert note is not None and client.error_message == ''
    with pytest.raises(ProtocolError):
        client.update_object(note.oaio_id, {'when': bad})
    with pytest.raises(ProtocolError):
        client.register_object({'_name': 'other', 'when': bad})
    assert 'when' not in client.client_objectz[note.oaio_id].client_values
    client.update_object(note.oaio_id, {'items': ['milk', 'bread']})     # later calls work
    assert client.synchronize_with_server_if_online(), client.error_message
    other = make_client('alice', 'phone')
    assert other.synchronize_with_server_if_online(), other.error_message
    assert other.client_objectz[note.oaio_id].client_values['items'] == ['milk', 'bread']
    assert [obj.client_values.get('_name') for obj in other.client_objectz.values()] == ['note']
