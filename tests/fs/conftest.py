"""Real FUSE mounts for the fs tests: ``oaio mount --foreground`` in a subprocess against the
``server`` fixture, always unmounted, with a watchdog against hung FUSE calls.

A test fails when its mount logged a warning, an error or a traceback it did not announce with
``mount.expect_log(pattern)``, or when the mount process did not end cleanly.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from oaio_testing import PASSWORD, wait_for

MOUNT_SECONDS = 40          # the mount syncs once (at most 30 s) before it reports ready
WATCHDOG_MARGIN = 60        # below the test's pytest-timeout: tear a hung mount down so the test fails instead
_RECORD = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) ')



def _json(value):
    return json.loads(value) if isinstance(value, str) else value


class ServerView:
    """What the server holds for one user, read through a logged-in ``api`` session."""

    def __init__(self, api):
        self.api = api

    def objects(self) -> dict[str, dict]:
        """Head of every object the user is subscribed to, by oaio_id."""
        answer = self.api.get('oaio_stampz/')
        assert answer.ok, answer.text
        return {obj['oaio_id']: obj for obj in answer.json()}

    def by_name(self, name: str) -> dict | None:
        found = [obj for obj in self.objects().values() if obj['client_values'].get('_name') == name]
        assert len(found) <= 1, f'{len(found)} objects named {name!r} on the server'
        return found[0] if found else None

    def file(self, obj: dict, path: str) -> bytes | None:
        """The content of ``path`` in the version ``obj`` names, or None if it has no such file."""
        url = f'files/{urllib.parse.quote(obj["oaio_id"], safe="")}/{obj["client_stamp"]}/' \
              f'{urllib.parse.quote(path)}'
        answer = self.api.get(url)
        if answer.status_code == 404:
            return None
        assert answer.ok, answer.text
        return answer.content

    def files(self, obj: dict) -> dict[str, bytes]:
        return {path: self.file(obj, path) for path in obj['client_values'].get('_file_paths', [])}

    def history(self, oaio_id: str) -> list[dict]:
        """Every stored version of an object, oldest first: ``{"stamp", "values", "files"}``.

        The wire protocol shows only heads, so this reads the server's database (read-only)."""
        # a version's files are the FileRows whose run covers its id (models.FileRow)
        versions = ('SELECT v.id, v.stamp, v."values", v.has_file_paths FROM oaio_version v JOIN oaio_oaiobject o '
                    'ON v.oai_object_id = o.id WHERE o.oaio_id = %s ORDER BY v.stamp')
        files = ('SELECT r.path, r.sha256, r.size, r.since, r.until FROM oaio_filerow r JOIN oaio_oaiobject o '
                 'ON r.oai_object_id = o.id WHERE o.oaio_id = %s')
        database_url = self.api.server.env.get('DATABASE_URL')
        if database_url:
            import psycopg
            with psycopg.connect(database_url) as connection:
                rows = connection.execute(versions, (oaio_id,)).fetchall()
                runs = connection.execute(files, (oaio_id,)).fetchall()
        else:
            connection = sqlite3.connect(f'file:{self.api.server.data / "db.sqlite3"}?mode=ro', uri=True)
            try:
                rows = connection.execute(versions.replace('%s', '?'), (oaio_id,)).fetchall()
                runs = connection.execute(files.replace('%s', '?'), (oaio_id,)).fetchall()
            finally:
                connection.close()
        history = []
        for version_id, stamp, values, has_file_paths in rows:
            manifest = {path: {'sha256': sha256, 'size': size} for path, sha256, size, since, until in runs
                        if since <= version_id and (until is None or until > version_id)}
            values = _json(values)
            if has_file_paths:
                values['_file_paths'] = sorted(manifest)
            history.append({'stamp': stamp, 'values': values, 'files': manifest})
        return history

    def cursor(self) -> int:
        """The user's change feed cursor: it grows by one with every version stored for the user."""
        answer = self.api.get('changes/', params={'since': '0'})
        assert answer.ok, answer.text
        return int(answer.json()['cursor'])

    def wait_object(self, name: str, check=lambda obj: True, what: str = '') -> dict:
        """Wait until the server has an object ``name`` whose head passes ``check``; return it."""
        def current():
            obj = self.by_name(name)
            return obj if obj is not None and check(obj) else None
        return wait_for(current, what=what or f'object {name!r} on the server')

    def wait_files(self, name: str, expected: dict[str, bytes]) -> dict:
        """Wait until the head of ``name`` has exactly the files ``expected`` (path → content)."""
        return self.wait_object(name, lambda obj: self.files(obj) == expected,
                                what=f'files {sorted(expected)} of {name!r} on the server')

    def wait_gone(self, name: str) -> None:
        wait_for(lambda: self.by_name(name) is None, what=f'object {name!r} gone from the server')


class MountProcess:
    """One ``oaio mount --foreground`` process on a temporary mountpoint."""

    wait_for = staticmethod(wait_for)

    def __init__(self, server, api, base: Path, user: str, device: str, watchdog_seconds: float):
        self.server, self.user, self.device = server, user, device
        self.watchdog_seconds = watchdog_seconds
        self.api = api
        self.remote = ServerView(api)
        self.path = base / 'mnt'
        self.cache = base / 'cache'
        self.password_file = base / 'password'
        self.output_path = base / 'mount.out'
        self.process: subprocess.Popen | None = None
        self.exit_codes: list[int] = []
        self.expected: list[re.Pattern] = []
        self.watchdog_fired = False
        self._watchdog: threading.Timer | None = None
        self.path.mkdir(parents=True)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as password:
            password.write(PASSWORD + '\n')

    def __truediv__(self, relative: str) -> Path:
        return self.path / relative

    # lifecycle --------------------------------------------------------------------------

    def start(self) -> MountProcess:
        assert self.process is None, 'mounted already'
        command = [sys.executable, '-m', 'oaio.fs.cli', 'mount', self.server.host, str(self.path),
                   '--user', self.user, '--password-file', str(self.password_file), '--cache', str(self.cache),
                   '--device', self.device, '--foreground']
        with open(self.output_path, 'ab') as output:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT)
        self._arm_watchdog()
        deadline = time.monotonic() + MOUNT_SECONDS
        while not os.path.ismount(self.path):
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                pytest.fail(f'oaio mount exited with {code} before mounting:\n{self.diagnostics()}')
            if time.monotonic() > deadline:
                pytest.fail(f'oaio mount did not mount within {MOUNT_SECONDS} s:\n{self.diagnostics()}')
            time.sleep(0.05)
        return self

    def stop(self) -> int:
        """Unmount as a user would (fusermount3 -u); the process drains and must exit with 0."""
        assert self.process is not None, 'not mounted'
        result = subprocess.run(['fusermount3', '-u', str(self.path)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f'fusermount3 -u failed: {result.stderr}'
        code = self._end(grace=30)
        assert code == 0, f'the mount process exited with {code}:\n{self.diagnostics()}'
        return code

    def restart(self) -> MountProcess:
        self.stop()
        return self.start()

    def teardown(self) -> None:
        """Whatever state it is in: unmounted, process gone (lazy unmount, then TERM, then KILL)."""
        try:
            if os.path.ismount(self.path) or self.process is not None:
                subprocess.run(['fusermount3', '-u', '-z', str(self.path)], capture_output=True, timeout=60)
            if self.process is not None:
                self._end(grace=30)
        finally:
            self._disarm_watchdog()

    def _end(self, grace: float) -> int:
        """Wait for the process; terminate it, then kill it if it does not end."""
        process, self.process = self.process, None
        try:
            code = process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                code = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
        self.exit_codes.append(code)
        return code

    def _arm_watchdog(self) -> None:
        self._disarm_watchdog()
        self._watchdog = threading.Timer(self.watchdog_seconds, self._fire_watchdog)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _disarm_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _fire_watchdog(self) -> None:
        """A test hangs: killing the daemon aborts every pending FUSE request (ENOTCONN)."""
        self.watchdog_fired = True
        process = self.process
        subprocess.run(['fusermount3', '-u', '-z', str(self.path)], capture_output=True, timeout=60)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)

    # logs -------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.cache / 'oaio.log'

    def log(self) -> str:
        return self.log_path.read_text(errors='replace') if self.log_path.exists() else ''

    def expect_log(self, pattern: str) -> None:
        """Announce a warning or error this test provokes (a regular expression searched in the record)."""
        self.expected.append(re.compile(pattern))

    def records(self) -> list[tuple[str, str]]:
        """(level, text) of every log record; continuation lines (tracebacks) join their record."""
        records: list[list[str]] = []
        for line in self.log().splitlines():
            match = _RECORD.match(line)
            if match or not records:
                records.append([match.group('level') if match else 'UNKNOWN', line])
            else:
                records[-1][1] += '\n' + line
        return [(level, text) for level, text in records]

    def unexpected_records(self) -> list[str]:
        return [text for level, text in self.records()
                if (level in ('WARNING', 'ERROR', 'CRITICAL', 'UNKNOWN') or 'Traceback' in text)
                and not any(pattern.search(text) for pattern in self.expected)]

    def status(self) -> dict:
        """``oaio status --json MOUNTPOINT`` of this mount."""
        result = subprocess.run([sys.executable, '-m', 'oaio.fs.cli', 'status', '--json', str(self.path)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[str(self.path)]

    def diagnostics(self) -> str:
        output = self.output_path.read_text(errors='replace') if self.output_path.exists() else ''
        return f'--- {self.log_path}\n{self.log()}--- output\n{output}'


@pytest.fixture
def mount(server, api, tmp_path, request):
    """A factory: ``mount('alice', 'laptop')`` adds the user (once), mounts their drive in a
    subprocess and returns the :class:`MountProcess` (``m / 'Notes/a.txt'`` is a path on it,
    ``m.remote`` the user's objects on the server). Every mount is unmounted after the test."""
    mounts: list[MountProcess] = []
    marker = request.node.get_closest_marker('timeout')
    test_timeout = marker.args[0] if marker and marker.args else request.config.getini('timeout')
    watchdog_seconds = float(test_timeout) - WATCHDOG_MARGIN

    def make(user: str = 'alice', device: str = 'dev1') -> MountProcess:
        base = tmp_path / f'mount-{len(mounts)}-{user}-{device}'
        mounted = MountProcess(server, api(user), base, user, device, watchdog_seconds)
        mounts.append(mounted)
        return mounted.start()

    failures = []
    try:
        yield make
    finally:
        for mounted in mounts:
            try:
                mounted.teardown()
            except Exception as exc:        # go on: every other mount must be unmounted too
                failures.append(f'{mounted.path}: teardown failed: {exc!r}')
    for mounted in mounts:
        if mounted.watchdog_fired:
            failures.append(f'{mounted.path}: the watchdog tore the mount down after {mounted.watchdog_seconds:.0f} s')
        if any(mounted.exit_codes):
            failures.append(f'{mounted.path}: the mount process exited with {mounted.exit_codes}')
        unexpected = mounted.unexpected_records()
        if unexpected:
            failures.append(f'{mounted.path}: the mount logged unexpectedly:\n' + '\n'.join(unexpected))
    if failures:
        # the logs first, what failed last: a report cut to its end (CI's) still names the cause
        pytest.fail('\n'.join([mounted.diagnostics() for mounted in mounts] + ['=== what failed ===', *failures]),
                    pytrace=False)
