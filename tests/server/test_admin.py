"""The Django admin: staff only, versions read-only, and changes made there reach the change feed;
an object whose head version vanished anyway does not break the answers about the others."""
import re
import subprocess
import sys

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


def run_django(server, code: str) -> None:
    """Run Python ``code`` in Django against the server's database (``oaio-server manage shell``)."""
    result = subprocess.run([sys.executable, '-m', 'oaio.server.cli', 'manage', '--data', str(server.data),
                             'shell', '-c', code], check=False, capture_output=True, text=True, env=server.env,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def admin_pk(session, server, model: str, term: str) -> str:
    """The primary key of the one row of ``model`` the admin's changelist finds for ``term``."""
    page = session.get(f'http://{server.host}/admin/oaio/{model}/', params={'q': term}, timeout=30)
    assert page.status_code == 200, page.text
    pks = set(re.findall(rf'/admin/oaio/{model}/(\d+)/change/', page.text))
    assert len(pks) == 1, pks
    return pks.pop()


def admin_post(session, url: str, data: dict) -> requests.Response:
    return session.post(url, timeout=30, allow_redirects=False, headers={'Referer': url},
                        data={'csrfmiddlewaretoken': session.cookies['csrftoken'], **data})


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


def test_versions_are_read_only_in_the_admin(server, api):
    alice = api('alice')
    assert alice.post('register/', json={'oaio_id': 'doc', 'client_stamp': STAMP, 'client_values': {'a': 1}}).ok
    api('root', staff=True)
    session = admin_session(server, 'root')
    pk = admin_pk(session, server, 'version', 'doc')
    base = f'http://{server.host}/admin/oaio/version/'
    assert session.get(f'{base}{pk}/change/', timeout=30).status_code == 200      # viewing stays
    assert session.get(f'{base}{pk}/delete/', timeout=30).status_code == 403
    assert admin_post(session, f'{base}{pk}/delete/', {'post': 'yes'}).status_code == 403
    assert admin_post(session, f'{base}{pk}/change/', {'stamp': '20261125101010999999', 'values': '{}',
                                                       '_save': 'Save'}).status_code == 403
    assert admin_post(session, f'{base}add/', {'stamp': STAMP, '_save': 'Save'}).status_code == 403
    admin_post(session, base, {'action': 'delete_selected', '_selected_action': pk, 'post': 'yes'})
    assert [(o['oaio_id'], o['server_stamp'], o['server_values']) for o in alice.get('oaio_stampz/').json()] == [
        ('doc', STAMP, {'a': 1})]


def test_object_deleted_in_the_admin_reaches_the_feed(server, api):
    alice, bob = api('alice'), api('bob')
    assert alice.post('register/', json={'oaio_id': 'doc', 'client_stamp': STAMP, 'client_values': {}}).ok
    assert alice.post('subscribe/', json={'oaio_id': 'doc', 'username': 'bob', 'access_right': 'r'}).ok
    cursors = {name: session.get('changes/').json()['cursor'] for name, session in (('alice', alice), ('bob', bob))}
    api('root', staff=True)
    session = admin_session(server, 'root')
    url = f'http://{server.host}/admin/oaio/oaiobject/{admin_pk(session, server, "oaiobject", "doc")}/delete/'
    assert session.get(url, timeout=30).status_code == 200
    assert admin_post(session, url, {'post': 'yes'}).status_code == 302
    for name, session in (('alice', alice), ('bob', bob)):
        assert session.get('changes/', params={'since': cursors[name]}).json()['changes'] == [
            {'oaio_id': 'doc', 'gone': 'deleted'}]
        assert session.get('oaio_stampz/').json() == []


def test_an_object_without_head_does_not_break_the_others(server, api):
    alice = api('alice')
    for oaio_id in ('broken', 'fine'):
        assert alice.post('register/', json={'oaio_id': oaio_id, 'client_stamp': STAMP, 'client_values': {}}).ok
    cursor = alice.get('changes/').json()['cursor']
    assert alice.post('upload/', json={'oaio_id': 'broken', 'client_stamp': '20261125101010999999',
                                       'server_stamp': STAMP, 'client_values': {}}).ok
    assert alice.post('upload/', json={'oaio_id': 'fine', 'client_stamp': '20261125101010999999',
                                       'server_stamp': STAMP, 'client_values': {'b': 2}}).ok
    # what deleting the head version in the admin did: Version's on_delete=SET_NULL empties the head
    run_django(server, 'from oaio.server.models import OaiObject, Version; '
                       "Version.objects.get(pk=OaiObject.objects.get(oaio_id='broken').head_id).delete()")
    listing = alice.get('oaio_stampz/')
    assert listing.status_code == 200, listing.text
    assert [(o['oaio_id'], o['server_values']) for o in listing.json()] == [('fine', {'b': 2})]
    for params in ({}, {'since': '0'}, {'since': cursor}):
        answer = alice.get('changes/', params=params)
        assert answer.status_code == 200, answer.text
        assert [entry['oaio']['oaio_id'] for entry in answer.json()['changes']] == ['fine']
    assert "object 'broken' has no head version" in server.log()
    # its owner can still delete the broken object, and the feed says so
    cursor = alice.get('changes/').json()['cursor']
    assert alice.post('delete/', json={'oaio_id': 'broken'}).ok
    changes = alice.get('changes/', params={'since': cursor}).json()['changes']
    assert changes == [{'oaio_id': 'broken', 'gone': 'deleted'}]


def test_an_admin_form_over_64_kib_is_read(server, api):
    """The body gate checks the session of a large body before reading it; a form's CSRF token is
    in that body, so Django's middleware checks it after the gate (a pre-check refused every form
    over 64 KiB as 'CSRF cookie not set')."""
    api('root', staff=True)
    session = admin_session(server, 'root')
    url = f'http://{server.host}/admin/oaio/oaiobject/'
    answer = admin_post(session, url, {'index': '0', 'note': 'x' * 70_000})     # no action chosen: a message
    assert answer.status_code in (200, 302), answer.text[:300]
    assert 'csrf' not in answer.text.lower()[:500]
    stranger = requests.post(url, data={'filler': 'x' * 70_000}, timeout=30)
    assert stranger.status_code == 401 or stranger.status_code == 403, stranger.text[:200]
