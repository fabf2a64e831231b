"""Client fixtures: ``make_client(user, device)`` opens an OaioClient on the live test server."""
from __future__ import annotations

import importlib.util
import sys
import time
import warnings
from pathlib import Path

import pytest

from oaio.client import OaioClient


def _load_root_conftest():
    # tests/ is no package, so this file and tests/conftest.py are both imported as 'conftest':
    # load the shared one under a name of its own to reach its constants
    path = Path(__file__).resolve().parent.parent / 'conftest.py'
    spec = importlib.util.spec_from_file_location('oaio_tests_shared_conftest', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module             # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_shared = _load_root_conftest()
PASSWORD, free_port, Api = _shared.PASSWORD, _shared.free_port, _shared.Api

# When a property test fails, hypothesis' pytest plugin imports its patch writer, which imports
# libcst, which triggers a DeprecationWarning (mypy_extensions.TypedDict). With the project's
# filterwarnings = error that becomes an INTERNALERROR that hides the failing example and stops
# the whole run. Import it here once, quietly, so a failure is reported as a failure.
with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass


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


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f'condition not met within {timeout} s: {predicate}')
        time.sleep(interval)
