"""The Django admin: staff only, and subscription changes made there reach the change feed."""
import re

import requests

from oaio_testing import PASSWORD

STAMP = '20261125101010123456'


def admin_session(server, username: str) -> requests.Session:
    session = requests.Session()
    url = f'http://{server.host}/admin/login/'
    session.get(url, timeout=30)
    answer = session.post(url, timeout=30, data={
        'username': username, 'password': PASSWORD, 'next': '/admin/',
        'csrfmiddlewaretoken': session.cookies['csrftoken']}, headers={'Referer': url})
    assert answer.ok
    return session


def test_admin_is_for_staff_only(server, api):
    api('alice')
    session = admin_session(server, 'alice')
    assert session.get(f'http://{server.host}/admin/oaio/subscription/', timeout=30).url.endswith(
        '/admin/login/?next=/admin/oaio/subscription/')


def test_subscription_added_in_the_admin_reaches_the_feed(server, api):
    alice, bob = api('alice'), api('bob')
    assert alice.post('register/', json={'oaio_id': 'shared', 'client_stamp': STAMP, 'client_values': {}}).ok
    cursor = bob.get('changes/').json()['cursor']
    api('root', staff=True)
    session = admin_session(server, 'root')
    url = f'http://{server.host}/admin/oaio/subscription/add/'
    form = session.get(url, timeout=30).text
    object_pk = re.search(r'<option value="(\d+)">shared</option>', form)
    bob_pk = re.search(r'<option value="(\d+)">bob</option>', form)
    if object_pk is None or bob_pk is None:     # autocomplete widgets list no options: ask the server
        object_pk = session.get(f'http://{server.host}/admin/autocomplete/', timeout=30, params={
            'app_label': 'oaio', 'model_name': 'subscription', 'field_name': 'oai_object', 'term': 'shared'}).json()
        bob_pk = session.get(f'http://{server.host}/admin/autocomplete/', timeout=30, params={
            'app_label': 'oaio', 'model_name': 'subscription', 'field_name': 'user', 'term': 'bob'}).json()
        object_id, bob_id = object_pk['results'][0]['id'], bob_pk['results'][0]['id']
    else:
        object_id, bob_id = object_pk.group(1), bob_pk.group(1)
    answer = session.post(url, timeout=30, headers={'Referer': url}, data={
        'oai_object': object_id, 'user': bob_id, 'access_right': 'r',
        'csrfmiddlewaretoken': session.cookies['csrftoken'], '_save': 'Save'})
    assert answer.ok and 'errornote' not in answer.text
    changes = bob.get('changes/', params={'since': cursor}).json()['changes']
    assert [(entry['oaio']['oaio_id'], entry['oaio']['csh_access_right']) for entry in changes] == [('shared', 'r')]
