"""Test support shared by every test directory: a real ``oaio-server`` process on a free loopback
port with its own data directory, and an HTTP session speaking the wire protocol.

(A module of its own, not conftest.py: tests/ is no package, so every conftest.py would be
``conftest`` to an import.)

The database is the embedded SQLite unless ``OAIO_TEST_DATABASE_URL`` names a PostgreSQL server;
then each server process gets a fresh database of its own on it (created and dropped here).
Users are added with ``oaio-server adduser``; passwords hash fast (``OAIO_PASSWORD_HASHER=fast``).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests

PASSWORD = 'correct horse battery staple'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def postgres_database() -> tuple[str, callable] | None:
    """A fresh database on the test PostgreSQL server, and a function that drops it."""
    base = os.environ.get('OAIO_TEST_DATABASE_URL')
    if not base:
        return None
    import psycopg
    name = f'oaio_test_{uuid.uuid4().hex[:12]}'
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE {name}')

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
    return base.rsplit('/', 1)[0] + '/' + name, drop


@dataclass
class ServerProcess:
    """A running ``oaio-server serve`` with its data directory; restartable on the same data."""

    data: Path
    env: dict
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def host(self) -> str:
        return f'127.0.0.1:{self.port}'

    @property
    def url(self) -> str:
        return f'http://{self.host}/api/'

    def run_cli(self, *args: str, stdin: str = '') -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, '-m', 'oaio.server.cli', *args, '--data', str(self.data)],
                              input=stdin, capture_output=True, text=True, env=self.env, timeout=120)

    def adduser(self, name: str, password: str = PASSWORD, staff: bool = False) -> str:
        result = self.run_cli('adduser', name, '--password-stdin', *(['--staff'] if staff else []),
                              stdin=password + '\n')
        assert result.returncode == 0, result.stderr
        return name

    def start(self) -> None:
        self.log_path = self.data.parent / f'server-{self.port}.log'
        with open(self.log_path, 'ab') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'oaio.server.cli', 'serve', '--data', str(self.data), '--bind', self.host],
                stdout=log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f'oaio-server exited with {self.process.returncode}:\n{self.log()}')
            try:
                if requests.get(self.url + 'current_stamp/', timeout=1).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f'oaio-server did not answer within 60 s:\n{self.log()}')

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path and self.log_path.exists() else ''


class Api:
    """A logged-in HTTP session speaking the wire protocol as the original client does (CSRF included)."""

    def __init__(self, server: ServerProcess, username: str, device: str = 'dev1', app: str = 'tests'):
        self.server, self.username = server, username
        self.session = requests.Session()
        self.session.headers.update({'X-OAIO-user': repr(username.encode()), 'X-OAIO-dvc': repr(device.encode()),
                                     'X-OAIO-app': repr(app.encode())})

    def _token_headers(self, slug: str) -> dict:
        if 'csrftoken' not in self.session.cookies:
            assert self.session.get(self.server.url + slug, timeout=30).ok
        url = self.server.url + slug
        return {'X-CSRFToken': self.session.cookies['csrftoken'], 'Referer': url}

    def login(self, password: str = PASSWORD) -> requests.Response:
        return self.post('login/', json={'username': self.username, 'password': password})

    def get(self, slug: str, **kwargs) -> requests.Response:
        return self.session.get(self.server.url + slug, timeout=kwargs.pop('timeout', 30), **kwargs)

    def post(self, slug: str, **kwargs) -> requests.Response:
        return self.request('post', slug, **kwargs)

    def request(self, method: str, slug: str, **kwargs) -> requests.Response:
        headers = {**self._token_headers(slug), **kwargs.pop('headers', {})}
        return self.session.request(method, self.server.url + slug, headers=headers,
                                    timeout=kwargs.pop('timeout', 30), **kwargs)




@contextlib.contextmanager
def running_server(data: Path):
    """Start a server on ``data`` (on a fresh PostgreSQL database when the tests run on PostgreSQL);
    stop it and drop that database afterwards."""
    env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', OAIO_LOG_LEVEL='INFO')
    database = postgres_database()
    if database:
        env['DATABASE_URL'] = database[0]
    srv = ServerProcess(data=data, env=env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if database:
            database[1]()


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def server_objects(session) -> dict[str, dict]:
    """The heads the server holds for the session's user, by id."""
    answer = session.get('oaio_stampz/')
    assert answer.ok, answer.text
    return {obj['oaio_id']: obj for obj in answer.json()}


def server_file(session, oaio_id: str, stamp: str, path: str) -> bytes:
    """The content of ``path`` in the version ``stamp`` of an object, as the session reads it."""
    answer = session.get(f'files/{quote(oaio_id, safe="")}/{stamp}/{quote(path)}')
    assert answer.status_code == 200, answer.text
    return answer.content


def oaio(*args: str) -> subprocess.CompletedProcess:
    """Run the ``oaio`` command (``oaio status MOUNTPOINT`` …) and return what it did."""
    return subprocess.run([sys.executable, '-m', 'oaio.fs.cli', *args], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def wait_for(predicate, timeout: float = 30.0, what: str = 'the condition', interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not reached within {timeout} s (last: {result!r})')
        time.sleep(interval)


def logged_errors(log: str) -> list[str]:
    """The lines of a server log that say something went wrong."""
    return [line for line in log.splitlines() if ' ERROR ' in line or 'Traceback' in line]


def file_digest(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def growing(directory: Path, glob: str, min_bytes: int):
    """A predicate for ``wait_for``: some file matching ``glob`` in ``directory`` has ``min_bytes``."""
    def check() -> bool:
        for path in directory.glob(glob):
            try:
                if path.stat().st_size >= min_bytes:
                    return True
            except FileNotFoundError:   # a temp file renamed or removed between glob and stat
                pass
        return False
    return check
