"""`oaio`'s exit codes (README "The drive"), one-line errors on stderr, and what --help says."""
from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading

import pytest

from oaio_testing import PASSWORD, oaio


@pytest.fixture
def not_oaio():
    """Some other HTTP server on this machine: every request gets an HTML error page."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = b'<!DOCTYPE html>\n<html>\n<body><h1>Not Found</h1>\n</body>\n</html>\n'
            self.send_response(404)
            self.send_header('Content-Type', 'text/html')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / 'password'
    path.write_text(PASSWORD + '\n')
    os.chmod(path, 0o600)
    return path


def assert_one_line(result, code: int, says: str) -> None:
    assert result.returncode == code, result
    assert result.stderr.count('\n') == 1 and says in result.stderr, result.stderr
    assert result.stderr.startswith('oaio: ') and 'Traceback' not in result.stderr


def test_a_usage_error_exits_with_1():
    result = oaio('status', '--no-such-option')
    assert result.returncode == 1 and 'unrecognized arguments' in result.stderr and result.stdout == ''


def test_status_of_a_path_that_is_no_drive_says_so(tmp_path):
    assert_one_line(oaio('status', str(tmp_path)), 2, f'{tmp_path} is not an oaio drive')
    assert_one_line(oaio('status', str(tmp_path / 'nothing')), 2, f'{tmp_path / "nothing"} does not exist')
    assert_one_line(oaio('access', str(tmp_path)), 2, f'{tmp_path} is not inside an oaio drive')
    assert_one_line(oaio('share', str(tmp_path), 'bob'), 2, f'{tmp_path} is not inside an oaio drive')


def test_a_server_that_is_no_oaio_server_is_one_line(not_oaio, password_file, tmp_path):
    (tmp_path / 'mnt').mkdir()
    says = f'{not_oaio} answers, but is no oaio server: its login http://{not_oaio}/api/login/ answered HTTP 404'
    result = oaio('sync', not_oaio, '--user', 'alice', '--password-file', str(password_file),
                  '--cache', str(tmp_path / 'cache'))
    assert_one_line(result, 5, says)
    result = oaio('mount', not_oaio, str(tmp_path / 'mnt'), '--user', 'alice', '--password-file', str(password_file),
                  '--cache', str(tmp_path / 'cache'))
    assert_one_line(result, 5, says)
    assert not os.path.ismount(tmp_path / 'mnt')


def test_sync_with_the_server_down_exits_with_3(password_file, tmp_path):
    result = oaio('sync', 'no-such-host.invalid', '--user', 'alice', '--password-file', str(password_file),
                  '--cache', str(tmp_path / 'cache'))
    assert_one_line(result, 3, 'server no-such-host.invalid unreachable: unknown host name no-such-host.invalid')


def test_help_explains_the_rights_and_the_exit_codes():
    share = oaio('share', '--help').stdout
    for right in ('r read', 'U update', 'D delete', 'C owner', 'x removes the share'):
        assert right in ' '.join(share.split()), share
    assert '3 server unreachable' in ' '.join(oaio('--help').stdout.split())


@pytest.fixture
def self_signed(tmp_path):
    """A TLS server on this machine whose certificate no one signed: ``https://127.0.0.1:PORT``."""
    if not shutil.which('openssl'):
        pytest.skip('no openssl to make a certificate')
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(key), '-out', str(cert),
                    '-days', '1', '-subj', '/CN=127.0.0.1'], check=True, capture_output=True, timeout=60)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'https://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()


def test_a_tls_certificate_not_accepted_is_one_line(self_signed, password_file, tmp_path):
    (tmp_path / 'mnt').mkdir()
    result = oaio('mount', self_signed, str(tmp_path / 'mnt'), '--user', 'alice', '--password-file',
                  str(password_file), '--cache', str(tmp_path / 'cache'))
    assert_one_line(result, 3, f'server {self_signed} unreachable: TLS certificate of 127.0.0.1 not accepted: ')
    assert not os.path.ismount(tmp_path / 'mnt')
