"""Clock skew: the client refuses to sync with a server whose clock is more than 69 s off, and says so.

The server runs under libfaketime (Debian's faketime), so its clock really is off; nothing is mocked.
"""
import os
from pathlib import Path

import pytest

from oaio.client import OaioClient

from oaio_testing import PASSWORD, ServerProcess, postgres_database

FAKETIME_LIBRARY = Path('/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1')


@pytest.fixture
def skewed_server(tmp_path, request):
    if not FAKETIME_LIBRARY.exists():
        pytest.fail('libfaketime is missing: apt-get install faketime (contrib/test does)')
    env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', LD_PRELOAD=str(FAKETIME_LIBRARY),
               FAKETIME=request.param, FAKETIME_DONT_FAKE_MONOTONIC='1', FAKETIME_NO_CACHE='1')
    database = postgres_database()
    if database:
        env['DATABASE_URL'] = database[0]
    srv = ServerProcess(data=tmp_path / 'server-data', env=env)
    srv.start()
    srv.adduser('alice')
    yield srv
    srv.stop()
    if database:
        database[1]()


@pytest.mark.parametrize('skewed_server', ['+5m', '-5m'], indirect=True)
def test_sync_is_refused_when_the_clocks_differ(skewed_server, tmp_path):
    with OaioClient(skewed_server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests',
                    device_id='laptop', client_root=str(tmp_path / 'root'), auto_sync=False) as client:
        obj = client.register_object({'a': 1})
        assert client.synchronize_with_server_if_online() is False
        assert 'clocks' in client.error_message and 'differ by' in client.error_message
        assert client.client_objectz[obj.oaio_id].pending            # kept for when the clock is fixed


@pytest.mark.parametrize('skewed_server', ['+30s'], indirect=True)
def test_sync_works_within_the_allowed_difference(skewed_server, tmp_path):
    with OaioClient(skewed_server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests',
                    device_id='laptop', client_root=str(tmp_path / 'root'), auto_sync=False) as client:
        obj = client.register_object({'a': 1})
        assert client.synchronize_with_server_if_online(), client.error_message
        assert not client.client_objectz[obj.oaio_id].pending
