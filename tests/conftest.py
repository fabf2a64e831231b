"""Shared fixtures (see oaio_testing.py): ``server`` — a real ``oaio-server`` process per test —,
``api`` — logged-in wire-protocol sessions on it —, and their per-module variants for large tables.

The database is the embedded SQLite unless ``OAIO_TEST_DATABASE_URL`` names a PostgreSQL server.
"""
import pytest

from oaio_testing import PASSWORD, Api, logged_errors, running_server


@pytest.fixture
def server(tmp_path):
    """A fresh server process; the test fails if the server logs an error."""
    with running_server(tmp_path / 'server-data') as srv:
        yield srv
    assert not logged_errors(srv.log()), 'the server logged errors:\n' + srv.log()


@pytest.fixture
def api(server):
    """A factory: ``api('alice')`` adds user alice (once) and returns her logged-in Api session."""
    added = set()

    def make(username: str, device: str = 'dev1', staff: bool = False) -> Api:
        if username not in added:
            server.adduser(username, staff=staff)
            added.add(username)
        session = Api(server, username, device)
        assert session.login().ok
        return session
    return make


@pytest.fixture(scope='module')
def module_server(tmp_path_factory):
    """One server process for all tests of a module, for tables of many small cases (each case uses
    object ids and user names of its own). Use it through ``shared_api``, which checks its log."""
    with running_server(tmp_path_factory.mktemp('module-server') / 'server-data') as srv:
        yield srv, set()


@pytest.fixture
def shared_api(module_server):
    """``api`` on the module's server: ``shared_api('bob')`` adds bob once per module and logs in;
    ``login=False`` gives a session that never logged in. The test fails if the server logs an error."""
    srv, added = module_server
    start = len(srv.log())

    def make(username: str, device: str = 'dev1', staff: bool = False, login: bool = True) -> Api:
        session = Api(srv, username, device)
        if login:
            if username not in added:
                srv.adduser(username, staff=staff)
                added.add(username)
            assert session.login().ok
        return session
    make.server, make.password = srv, PASSWORD
    yield make
    assert not logged_errors(srv.log()[start:]), 'the server logged errors:\n' + srv.log()[start:]
