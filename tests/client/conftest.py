"""Client fixtures: ``make_client(user, device)`` opens an OaioClient on the live test server."""
from __future__ import annotations

import pytest

from oaio.client import OaioClient

from oaio_testing import PASSWORD, free_port


@pytest.fixture
def make_client(server, api, tmp_path):
    """A factory of OaioClient instances, each with its own ``client_root`` under ``tmp_path``.

    ``make_client('alice', 'laptop')`` adds the user on the server (once) and returns a client with
    ``app_id='tests'``; ``host`` (e.g. of a port where nothing listens), ``password``,
    ``auto_sync`` and ``client_root`` can be given. Every client is closed at teardown.
    """
    clients: list[OaioClient] = []
    users: set[str] = set()

    def make(user: str, device: str = 'dev1', *, auto_sync: bool = False, host: str = '',
             password: str = PASSWORD, client_root: str = '') -> OaioClient:
        if user not in users:
            api(user)                               # adds the user on the server
            users.add(user)
        root = client_root or str(tmp_path / 'clients' / f'{user}-{device}')
        client = OaioClient(host or server.host, {'username': user, 'password': password}, app_id='tests',
                            device_id=device, client_root=root, auto_sync=auto_sync)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def dead_host():
    """``127.0.0.1:PORT`` of a free port where nothing listens."""
    return f'127.0.0.1:{free_port()}'
