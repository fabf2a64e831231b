"""docs/openapi.yaml stays true: valid OpenAPI 3, every URL pattern of oaio.server.urls (and the change
feed in front of Django) is one of its paths and vice versa, and live answers of real requests
validate against its response schemas (status codes, JSON bodies, headers)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

STAMP, NEXT = '20261125101010123456', '20261125101011000000'
SPEC_PATH = Path(__file__).resolve().parents[2] / 'docs' / 'openapi.yaml'


@pytest.fixture(scope='module')
def spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def test_the_spec_is_valid_openapi(spec):
    validate(spec)


def url_patterns(tmp_path) -> set[str]:
    """The API's URL patterns as OpenAPI paths, read from oaio.server.urls in a Django of its own."""
    code = ('import django; django.setup(); from oaio.server import urls;'
            'print("\\n".join(str(p.pattern) for p in urls.api))')
    env = dict(os.environ, DJANGO_SETTINGS_MODULE='oaio.server.settings', OAIO_DATA=str(tmp_path))
    env.pop('DATABASE_URL', None)
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True).stdout
    paths = set()
    for pattern in out.split():
        pattern = re.sub(r'\(\?P<(\w+)>[^)]*\)', r'{\1}', pattern.lstrip('^').rstrip('$')).replace('/?', '')
        paths.add('/api/' + pattern)
    return paths


# served by plain ASGI apps in front of Django (asgi.py), not by URL patterns; they answer POST only
BESIDE_DJANGO = {'/api/changes/', '/api/chunks/', '/api/chunks/fetch/'}


def test_every_url_pattern_is_in_the_spec_and_vice_versa(spec, tmp_path):
    patterns = url_patterns(tmp_path) | BESIDE_DJANGO
    assert '/api/user_subz/{oaio_id}' in patterns and '/api/files/{oaio_id}/{stamp}/{path}' in patterns
    assert patterns == set(spec['paths'])


def test_post_endpoints_document_their_token_get(spec):
    for path, item in spec['paths'].items():
        if 'post' in item and path not in BESIDE_DJANGO:
            assert set(item) == {'get', 'post'}, path
            assert '200' in item['get']['responses']
        for method, operation in item.items():
            if method in ('get', 'post', 'put', 'delete'):
                assert operation['responses'], (path, method)


def resolve(spec: dict, node: dict) -> dict:
    while '$ref' in node:
        target = spec
        for part in node['$ref'].split('/')[1:]:
            target = target[part.replace('~1', '/').replace('~0', '~')]
        node = target
    return node


def check_answer(spec: dict, template: str, method: str, answer) -> None:
    """The answer's status is documented for the operation and its body and headers match the schema."""
    operation = spec['paths'][template][method.lower()]
    assert str(answer.status_code) in operation['responses'], (template, method, answer.status_code, answer.text)
    documented = resolve(spec, operation['responses'][str(answer.status_code)])
    content_type = answer.headers['Content-Type'].split(';')[0]
    assert content_type in documented['content'], (template, method, content_type)
    schema = documented['content'][content_type]['schema']
    for name, header in documented.get('headers', {}).items():
        if header.get('required'):
            assert name in answer.headers, (template, method, name)
    if content_type == 'application/json':
        body = answer.json()
        jsonschema.validate(body, {'allOf': [schema], 'components': spec['components']})
        if answer.status_code >= 400:
            assert {'error', 'detail'} <= set(body)


def test_live_answers_match_the_spec(spec, api, server):
    alice, bob = api('alice'), api('bob')
    calls = []

    def call(session, method: str, template: str, url: str, **kwargs):
        answer = session.request(method, url, **kwargs) if method != 'get' else session.get(url, **kwargs)
        check_answer(spec, template, method, answer)
        calls.append((template, method, answer.status_code))
        return answer

    anonymous_login = call(type(alice)(server, 'alice'), 'post', '/api/login/', 'login/',
                           json={'username': 'alice', 'password': 'wrong'})
    assert anonymous_login.status_code == 401
    call(alice, 'get', '/api/login/', 'login/')
    call(alice, 'get', '/api/current_stamp/', 'current_stamp/')
    sha256 = call(alice, 'put', '/api/files/{oaio_id}/{stamp}/{path}', f'files/doc/{STAMP}/dir/a.txt',
                  data=b'hello\n').json()['sha256']
    call(alice, 'post', '/api/register/', 'register/',
         json={'oaio_id': 'doc', 'client_stamp': STAMP, 'client_values': {'_file_paths': ['dir/a.txt']}})
    call(alice, 'post', '/api/register/', 'register/', json={'oaio_id': 'doc', 'client_stamp': STAMP})      # 409
    call(alice, 'post', '/api/register/', 'register/', json={'oaio_id': 'a/b', 'client_stamp': STAMP})      # 400
    conflict = call(alice, 'post', '/api/upload/', 'upload/',
                    json={'oaio_id': 'doc', 'client_stamp': NEXT, 'server_stamp': '20261125101010000000'})
    assert conflict.status_code == 409 and 'head' in conflict.json()
    call(alice, 'post', '/api/upload/', 'upload/', json={'oaio_id': 'doc', 'client_stamp': NEXT, 'server_stamp': STAMP,
                                                         'client_values': {'_file_paths': ['dir/a.txt']},
                                                         'files': {'dir/a.txt': sha256}})
    call(bob, 'get', '/api/files/{oaio_id}/{stamp}/{path}', f'files/doc/{STAMP}/dir/a.txt')       # 404: not shared yet
    call(alice, 'get', '/api/oaio_stampz/', 'oaio_stampz/')
    call(alice, 'post', '/api/subscribe/', 'subscribe/',
         json={'oaio_id': 'doc', 'username': 'bob', 'access_right': 'r'})
    call(alice, 'get', '/api/user_subz/{oaio_id}', 'user_subz/doc')
    call(bob, 'get', '/api/user_subz/{oaio_id}', 'user_subz/_not__existing__oaio_id_')
    call(bob, 'post', '/api/upload/', 'upload/', json={'oaio_id': 'doc', 'client_stamp': '20261125101012000000',
                                                       'server_stamp': NEXT})                               # 403
    assert call(bob, 'get', '/api/files/{oaio_id}/{stamp}/{path}', f'files/doc/{NEXT}/dir/a.txt').content == b'hello\n'
    call(bob, 'get', '/api/files/{oaio_id}/{stamp}/{path}', f'files/doc/{NEXT}/nope.txt')                  # 404
    call(alice, 'get', '/api/csh_args/{csh_id}', 'csh_args/oaio')
    call(alice, 'get', '/api/csh_args/{csh_id}', 'csh_args/nowhere')
    call(alice, 'post', '/api/blobs/missing/', 'blobs/missing/', json={'sha256': ['0' * 64]})
    pack_type = {'Content-Type': 'application/x-oaio-pack'}
    call(alice, 'post', '/api/chunks/', 'chunks/', data=f'{sha256} 6\n'.encode() + b'hello\n', headers=pack_type)
    call(alice, 'post', '/api/chunks/', 'chunks/', data=b'not a pack', headers=pack_type)                # 400
    assert call(bob, 'post', '/api/chunks/fetch/', 'chunks/fetch/', json={'sha256': [sha256]}).content == \
        f'{sha256} 6\n'.encode() + b'hello\n'
    call(bob, 'post', '/api/chunks/fetch/', 'chunks/fetch/', json={'sha256': ['0' * 64]})                # 404
    call(alice, 'delete', '/api/files/{oaio_id}/{stamp}/{path}', f'files/other/{STAMP}/')
    call(alice, 'get', '/api/changes/', 'changes/')
    call(alice, 'get', '/api/changes/', 'changes/?files=delta')
    call(alice, 'get', '/api/changes/', 'changes/?since=0&files=delta')
    call(alice, 'get', '/api/manifest/{oaio_id}/{stamp}', f'manifest/doc/{NEXT}')
    call(bob, 'get', '/api/manifest/{oaio_id}/{stamp}', f'manifest/doc/{STAMP}')                           # 404
    call(bob, 'get', '/api/changes/', 'changes/?since=0')
    call(bob, 'get', '/api/changes/', 'changes/?since=abc')
    call(bob, 'post', '/api/delete/', 'delete/', json={'oaio_id': 'doc'})                                  # 403
    call(alice, 'post', '/api/wipe_user/', 'wipe_user/', json={'Uid': 'bob'})                              # 403
    call(bob, 'post', '/api/wipe_user/', 'wipe_user/', json={'Uid': 'bob'})
    call(alice, 'post', '/api/delete/', 'delete/', json={'oaio_id': 'doc'})
    call(alice, 'post', '/api/logout/', 'logout/')
    call(alice, 'get', '/api/oaio_stampz/', 'oaio_stampz/')                                                # 401
    statuses = {status for _, _, status in calls}
    assert {200, 201, 400, 401, 403, 404, 409} <= statuses, calls
    assert {template for template, _, _ in calls} == set(spec['paths'])
