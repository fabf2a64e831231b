"""The client talks to the server it was given and to nothing else: it follows no redirect (a 307/308
would carry the login's password, an upload's content, the X-OAIO headers and the session cookie
to the address named, https → http alike), and it speaks plain http only to this machine.

Each redirect test runs two hostile servers (tests/client/hostile_server.py, real HTTP): one
answers with the redirect, the other is its target and logs every connection it accepts — it must
see none."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from oaio.client import OaioClient
from oaio.client.api import base_url
from oaio.client.errors import RedirectRefused

from hostile_server import Hostile, entry, served

PASSWORD = 'the password that must stay home'


@pytest.fixture
def start(tmp_path):
    """``start(name, scenario)`` runs a hostile server in ``tmp_path / name``; all stop at teardown."""
    started = []

    def run(name: str, scenario: dict) -> Hostile:
        started.append(Hostile(tmp_path, scenario, name))
        return started[-1]
    yield run
    for server in started:
        server.stop()


def open_client(host: str, root: Path) -> OaioClient:
    return OaioClient(host, {'username': 'alice', 'password': PASSWORD}, app_id='tests', device_id='victim',
                      client_root=str(root), auto_sync=False)


def assert_refused(message: str, status: int, target: Hostile) -> None:
    """The error names the redirect and its target, and the target got no connection at all."""
    assert f'with {status} redirect to ' in message and target.host in message, message
    assert 'oaio follows no redirects' in message, message
    assert target.requests() == []


@pytest.mark.parametrize('request_line, status', [('GET login/', 307), ('GET login/', 308), ('POST login/', 307),
                                                  ('POST login/', 308), ('POST login/', 302)])
def test_login_redirect_is_refused(start, tmp_path, request_line, status):
    """A redirect of the CSRF-token GET or of the login POST: neither the password nor the headers
    go to its target, and the client is not logged in (it asks for nothing but login/)."""
    target = start('target', {'log_connections': True})
    server = start('hostile', {'redirects': {request_line: [status, f'http://{target.host}/api/login/']}})
    with open_client(server.host, tmp_path / 'client') as client:
        with pytest.raises(RedirectRefused) as refused:
            client.login()
        assert_refused(str(refused.value), status, target)
        assert not client.synchronize_with_server_if_online()
        assert_refused(client.error_message, status, target)
    assert {request['path'] for request in server.requests()} == {'/api/login/'}
    if request_line.startswith('GET'):          # the password was not even sent to the hostile server
        assert {request['method'] for request in server.requests()} == {'GET'}


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (made with the openssl command)."""
    if not shutil.which('openssl'):
        pytest.skip('the openssl command is needed to make a certificate')
    cert, key = folder / 'cert.pem', folder / 'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                    '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
                    '-keyout', str(key), '-out', str(cert)], check=True, capture_output=True)
    return cert, key


def test_https_to_http_redirect_is_refused(start, tmp_path, monkeypatch):
    """A server reached over https that redirects the login to plain http: refused like any other."""
    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', str(cert))         # requests trusts this certificate
    target = start('target', {'log_connections': True})
    server = start('hostile', {'tls': {'cert': str(cert), 'key': str(key)},
                               'redirects': {'POST login/': [307, f'http://{target.host}/api/login/']}})
    with open_client(f'https://{server.host}', tmp_path / 'client') as client:
        assert client.server_url == f'https://{server.host}/api/'
        assert not client.synchronize_with_server_if_online()
        assert_refused(client.error_message, 307, target)
    assert [request['method'] for request in server.requests()] == ['GET', 'POST']     # spoken over https


def test_redirect_after_login_is_refused(start, tmp_path):
    """Logged in, the clock check is redirected: the round ends with the error, nothing followed."""
    target = start('target', {'log_connections': True})
    server = start('hostile', {'redirects': {'GET current_stamp/': [308, f'http://{target.host}/api/current_stamp/']}})
    with open_client(server.host, tmp_path / 'client') as client:
        client.login()
        assert not client.synchronize_with_server_if_online()
        assert_refused(client.error_message, 308, target)
    assert [request['path'] for request in server.requests()][-2:] == ['/api/current_stamp/', '/api/logout/']


def test_redirected_download_is_refused_and_fetched_again(start, tmp_path):
    """A file download answered with a redirect is not followed, and no verdict on the object: the
    round ends before the change feed's cursor moves on, so the next sync asks for the file again."""
    target = start('target', {'log_connections': True})
    files = {'report.txt': 'the report\n'}
    server = start('hostile', {'changes': [entry('doc', {'_file_paths': ['report.txt']}, files)],
                               'files': served('doc', files),
                               'redirects': {'POST chunks/fetch/': [302, f'http://{target.host}/elsewhere/pack']}})
    root = tmp_path / 'client'
    with open_client(server.host, root) as client:
        for _ in range(2):
            assert not client.synchronize_with_server_if_online()
            assert_refused(client.error_message, 302, target)
            assert client.client_objectz == {}
        assert not list((root / 'tmp').iterdir())
    downloads = [request for request in server.requests() if request['path'] == '/api/chunks/fetch/']
    assert [request['status'] for request in downloads] == [302, 302]


def test_redirected_upload_is_refused(start, tmp_path):
    """An upload answered with a redirect: the file's content goes nowhere else, the version stays
    pending with the error."""
    target = start('target', {'log_connections': True})
    server = start('hostile', {'redirects': {'POST chunks/': [307, f'http://{target.host}/api/chunks/stolen']}})
    with open_client(server.host, tmp_path / 'client') as client:
        obj = client.register_file('secret.txt', b'not for the redirect target\n')
        assert not client.synchronize_with_server_if_online()
        assert_refused(client.error_message, 307, target)
        assert client.object(obj.oaio_id).pending
    assert [request['method'] for request in server.requests() if request['path'] == '/api/chunks/'] == ['POST']


@pytest.mark.parametrize('host, url', [
    ('localhost', 'http://localhost/api/'),
    ('localhost:8000', 'http://localhost:8000/api/'),
    ('127.0.0.1:9', 'http://127.0.0.1:9/api/'),
    ('127.5.6.7', 'http://127.5.6.7/api/'),
    ('[::1]:8000', 'http://[::1]:8000/api/'),
    ('::1', 'http://[::1]/api/'),
    ('localhost.evil.example', 'https://localhost.evil.example/api/'),
    ('127.0.0.1.nip.io', 'https://127.0.0.1.nip.io/api/'),
    ('example.org', 'https://example.org/api/'),
    ('localhostx:80', 'https://localhostx:80/api/'),
    ('localhost@evil.example', 'https://localhost@evil.example/api/'),      # the host is evil.example
    ('128.0.0.1', 'https://128.0.0.1/api/'),
    ('2001:db8::1', 'https://[2001:db8::1]/api/'),
    ('http://example.org:8000', 'http://example.org:8000/api/'),
    ('https://localhost/api/', 'https://localhost/api/'),
])
def test_base_url_speaks_plain_http_only_to_this_machine(host, url):
    assert base_url(host) == url


def test_mount_refuses_a_redirecting_server_with_one_line(start, tmp_path):
    """``oaio mount`` logs in before mounting: a redirect there is an error the user sees, not a traceback."""
    import os
    import sys
    target = start('target', {'log_connections': True})
    hostile = start('hostile', {'redirects': {'POST login/': [307, f'http://{target.host}/api/login/']}})
    password_file, mountpoint = tmp_path / 'password', tmp_path / 'drive'
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    mountpoint.mkdir()
    try:
        result = subprocess.run([sys.executable, '-m', 'oaio.fs.cli', 'mount', hostile.host, str(mountpoint),
                                 '--user', 'alice', '--password-file', str(password_file),
                                 '--cache', str(tmp_path / 'cache')], capture_output=True, text=True, timeout=120)
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(['fusermount3', '-u', '-z', str(mountpoint)], check=False)
    assert result.returncode == 5           # refused by the server, or no oaio server there (README)
    assert 'redirect' in result.stderr and 'Traceback' not in result.stderr, result.stderr
    assert target.requests() == []
