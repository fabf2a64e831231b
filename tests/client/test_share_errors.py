"""Sharing's core methods (``share``, ``access_list``) raise typed errors, and the seed-compatible
facade (``upsert_subscription``, ``userz_access``, ``unsubscribe``) turns them into 0/[]/'' plus
``error_message``; neither waits for the client's lock (a sync holds it for as long as it runs)."""
from __future__ import annotations

import threading

import pytest

from oaio.client import AccessDenied, NotFound, OfflineError


def test_share_and_access_list_raise_typed_errors(make_client):
    alice, bob = make_client('alice'), make_client('bob')
    obj = alice.register_object({'_name': 'shared'})
    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert alice.share(obj.oaio_id, 'bob', 'r') > 0
    assert [row['username'] for row in alice.access_list(obj.oaio_id)] == ['alice', 'bob']
    assert bob.synchronize_with_server_if_online(), bob.error_message
    with pytest.raises(AccessDenied) as refused:
        bob.share(obj.oaio_id, 'bob', 'C')
    assert not isinstance(refused.value, NotFound) and refused.value.status == 403
    with pytest.raises(NotFound):
        alice.share(obj.oaio_id, 'nobody-of-that-name', 'r')
    assert bob.error_message == '' and alice.error_message == '', 'the core methods leave error_message alone'


def test_the_facade_answers_zero_and_error_message(make_client):
    alice, bob = make_client('alice'), make_client('bob')
    obj = alice.register_object({'_name': 'shared'})
    assert alice.synchronize_with_server_if_online(), alice.error_message
    assert alice.upsert_subscription(obj.oaio_id, 'bob', 'r') > 0
    assert bob.synchronize_with_server_if_online(), bob.error_message
    assert bob.upsert_subscription(obj.oaio_id, 'bob', 'C') == 0
    assert 'HTTP 403' in bob.error_message
    assert bob.unsubscribe(obj.oaio_id, 'bob') == ''
    assert bob.object(obj.oaio_id) is None, 'unsubscribing oneself drops the object at once'


def test_sharing_does_not_wait_for_a_running_sync(make_client):
    alice = make_client('alice')
    obj = alice.register_object({'_name': 'shared'})
    assert alice.synchronize_with_server_if_online(), alice.error_message
    make_client('bob')
    held, release = threading.Event(), threading.Event()

    def long_sync():
        with alice._lock:           # what a sync of many files holds
            held.set()
            release.wait(30)
    syncing = threading.Thread(target=long_sync)
    syncing.start()
    try:
        assert held.wait(10)
        answer: list = []
        asking = threading.Thread(target=lambda: answer.append(
            (alice.share(obj.oaio_id, 'bob', 'U'), alice.access_list(obj.oaio_id))))
        asking.start()
        asking.join(20)
        assert answer and answer[0][0] > 0, 'share waited for the lock'
        assert {row['username']: row['access_right'] for row in answer[0][1]} == {'alice': 'C', 'bob': 'U'}
    finally:
        release.set()
        syncing.join()


def test_offline_sharing_raises_offline(make_client, dead_host):
    client = make_client('alice', host=dead_host)
    with pytest.raises(OfflineError):
        client.access_list('')
    assert client.userz_access('') == [] and client.error_message
