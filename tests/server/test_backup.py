"""Backup and restore exactly as docs/operations.md says, taken while the server runs and a third
user keeps writing: the database first (SQLite's online backup, or pg_dump -Fc on PostgreSQL), then
the secret key and the blob directory. The server is stopped, its data directory wiped (and on
PostgreSQL its database dropped), the backup restored and the server started on it at the same
address: the clients sync on as if nothing happened — same objects, same bytes, same sessions —,
a new edit goes up and reaches a second user, a new device gets everything, and every version in
the restored database has its files (the reason for the order).
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from oaio.client import OaioClient

from oaio_testing import PASSWORD, Api, ServerProcess, logged_errors, postgres_database, sha, wait_for

# the commands of docs/operations.md ("Backup" and "Restore"); DATA, BACKUP and DATABASE_URL are filled in
SQLITE_BACKUP = [
    ['sqlite3', '{DATA}/db.sqlite3', ".backup '{BACKUP}/db.sqlite3'"],
    ['cp', '-p', '{DATA}/secret_key', '{BACKUP}/'],
    ['rsync', '-a', '{DATA}/blobs/', '{BACKUP}/blobs/'],
]
SQLITE_RESTORE = [
    ['mkdir', '-m', '700', '{DATA}'],
    ['cp', '-p', '{BACKUP}/db.sqlite3', '{BACKUP}/secret_key', '{DATA}/'],
    ['rsync', '-a', '{BACKUP}/blobs/', '{DATA}/blobs/'],
]
# Python's sqlite3 instead of the sqlite3 command (the same online backup)
PYTHON_DB_BACKUP = [sys.executable, '-c', 'import sqlite3, sys; d = sqlite3.connect(sys.argv[2]); '
                    'sqlite3.connect(sys.argv[1]).backup(d); d.close()', '{DATA}/db.sqlite3', '{BACKUP}/db.sqlite3']
POSTGRES_BACKUP = [
    ['pg_dump', '-Fc', '-f', '{BACKUP}/oaio.dump', '{DATABASE_URL}'],
    ['cp', '-p', '{DATA}/secret_key', '{BACKUP}/'],
    ['rsync', '-a', '{DATA}/blobs/', '{BACKUP}/blobs/'],
]
POSTGRES_RESTORE = [
    ['pg_restore', '--no-owner', '--exit-on-error', '-d', '{DATABASE_URL}', '{BACKUP}/oaio.dump'],
    ['mkdir', '-m', '700', '{DATA}'],
    ['cp', '-p', '{BACKUP}/secret_key', '{DATA}/'],
    ['rsync', '-a', '{BACKUP}/blobs/', '{DATA}/blobs/'],
]


def run(commands: list[list[str]], **places: str) -> None:
    for command in commands:
        argv = [part.format(**places) for part in command]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f'{argv}: {result.stderr}'


def client(server: ServerProcess, tmp: Path, user: str, device: str) -> OaioClient:
    return OaioClient(server.host, {'username': user, 'password': PASSWORD}, app_id='tests', device_id=device,
                      client_root=str(tmp / 'clients' / f'{user}-{device}'), auto_sync=False)


def synced(*clients: OaioClient) -> None:
    for one in clients:
        assert one.synchronize_with_server_if_online(), one.error_message
        assert one.error_message == '', one.error_message


def seen(one: OaioClient) -> dict:
    """What a client holds: every object's head and values, and the bytes of its files."""
    held = {}
    for oaio_id, obj in one.client_objectz.items():
        root = one.files_root(oaio_id)
        files = {path: (root / path).read_bytes() for path in obj.client_values.get('_file_paths', [])}
        held[oaio_id] = (obj.client_stamp, obj.server_stamp, obj.client_values, obj.csh_access_right, files)
    return held


class Writer(threading.Thread):
    """Carol writes new versions of one object with a file, as fast as the server takes them."""

    def __init__(self, server: ServerProcess):
        super().__init__(daemon=True)
        self.session = Api(server, 'carol', device='busy')
        assert self.session.login().ok
        self.stop, self.acknowledged, self.n = threading.Event(), [], 0

    def version(self) -> bool:
        self.n += 1
        stamp = f'20261202080000{self.n:06d}'
        put = self.session.request('put', f'files/busy/{stamp}/f.bin', data=b'%d' % self.n * 1000)
        assert put.status_code == 201, put.text
        body = {'oaio_id': 'busy', 'client_stamp': stamp, 'client_values': {'n': self.n, '_file_paths': ['f.bin']}}
        if self.acknowledged:
            answer = self.session.post('upload/', json={**body, 'server_stamp': self.acknowledged[-1]})
        else:
            answer = self.session.post('register/', json=body)
        assert answer.status_code == 200, answer.text
        self.acknowledged.append(stamp)
        return True

    def more(self, count: int) -> None:
        """Wait until ``count`` more versions are acknowledged."""
        goal = len(self.acknowledged) + count
        wait_for(lambda: len(self.acknowledged) >= goal or not self.is_alive(), what='more versions')
        assert len(self.acknowledged) >= goal, 'the writer stopped'

    def run(self) -> None:
        with contextlib.suppress(requests.RequestException):
            while not self.stop.is_set():
                self.version()


def blobs_without_file(server: ServerProcess) -> int:
    """How many Blob rows of the server's database have no file in its blob directory."""
    code = ('from oaio.server.blobs import blob_name; from oaio.server.models import Blob; import os, sys; '
            f'print(len([b for b in Blob.objects.all() if not os.path.isfile(os.path.join({str(server.data)!r}, '
            '"blobs", blob_name(b.sha256)))]), Blob.objects.count())')
    result = subprocess.run([sys.executable, '-m', 'oaio.server.cli', 'manage', '--data', str(server.data),
                             'shell', '-c', code], capture_output=True, text=True, env=server.env, timeout=60)
    assert result.returncode == 0, result.stderr
    missing, total = map(int, result.stdout.splitlines()[-1].split())   # after shell's own lines
    assert total > 0
    return missing


def blob_file(root: Path, sha256: str) -> Path:
    return root / 'blobs' / sha256[:2] / sha256[2:4] / sha256


def backup_and_restore(tmp: Path, env: dict, backup_commands: list, places: dict, restore, check_backup=None,
                       wrong_order=None) -> None:
    data, backup = tmp / 'server-data', tmp / 'backup'
    server = ServerProcess(data=data, env=env)
    server.start()
    with contextlib.ExitStack() as stack:
        stack.callback(server.stop)
        for user in ('alice', 'bob', 'carol'):
            server.adduser(user)
        laptop = stack.enter_context(client(server, tmp, 'alice', 'laptop'))
        phone = stack.enter_context(client(server, tmp, 'bob', 'phone'))

        # alice's objects: a file, a folder of several (binary, empty, a non-ASCII name), one shared with bob
        rng = random.Random(14)
        note = laptop.register_file('notes/today.md', file_content=b'# today\n- back up\n')
        laptop.update_object(note.oaio_id, {'_name': 'Today', 'tags': ['ops']})
        photos = laptop.register_object({'_name': 'Photos'}, oaio_id='photos-of-alice')
        folder = laptop.files_root(photos.oaio_id)
        (folder / 'sub').mkdir(parents=True)
        (folder / 'big.bin').write_bytes(rng.randbytes(700_000))
        (folder / 'sub' / 'café.txt').write_bytes('über\n'.encode())
        (folder / 'sub' / 'empty').write_bytes(b'')
        assert laptop.rescan_files(photos.oaio_id)
        plain = laptop.register_object({'_name': 'values only', 'n': 1})
        synced(laptop)
        assert laptop.upsert_subscription(note.oaio_id, 'bob', 'U'), laptop.error_message
        synced(laptop, phone)
        assert set(phone.client_objectz) == {note.oaio_id}

        kept = Api(server, 'bob', device='kept')         # a session from before the backup
        assert kept.login().ok
        writer = Writer(server)
        writer.version()
        writer.start()
        before = {'laptop': seen(laptop), 'phone': seen(phone)}
        assert set(before['laptop']) == {note.oaio_id, photos.oaio_id, plain.oaio_id}

        # while the server runs and carol writes: the database first, then (carol writing on, so
        # the blobs hold files the database backup does not name) the secret key and the blobs
        backup.mkdir()
        places = dict(places, DATA=str(data), BACKUP=str(backup))
        run(backup_commands[:1], **places)
        writer.more(3)
        run(backup_commands[1:], **places)
        if check_backup:
            check_backup(backup)
        if wrong_order:
            wrong_order(server, writer, tmp / 'wrong-order')
        writer.stop.set()
        writer.join(timeout=30)
        assert not writer.is_alive()
        print(f'\ncarol wrote {len(writer.acknowledged)} versions around the backup')
        assert len(writer.acknowledged) > 2, 'the writer did not write during the backup'

        assert server.stop() == 0, server.log()
        log = server.log()
        assert not logged_errors(log), log
        shutil.rmtree(data)
        restore(server, places)
        server.start()                                  # same address: the clients do not know

        # the clients sync on: nothing to do, nothing changed, the sessions of before still valid
        synced(laptop, phone)
        assert {'laptop': seen(laptop), 'phone': seen(phone)} == before
        assert [obj['oaio_id'] for obj in kept.get('oaio_stampz/').json()] == [note.oaio_id]    # no new login
        # a new device of alice gets everything from the restored server, byte for byte
        tablet = stack.enter_context(client(server, tmp, 'alice', 'tablet'))
        synced(tablet)
        assert seen(tablet) == before['laptop']
        # a new edit goes up and reaches bob
        edited = laptop.update_file(note.oaio_id, file_content=b'# today\n- back up\n- restore\n')
        synced(laptop, phone)
        assert phone.client_objectz[note.oaio_id].client_stamp == edited.client_stamp
        assert (phone.files_root(note.oaio_id) / 'notes' / 'today.md').read_bytes() == \
            b'# today\n- back up\n- restore\n'
        (folder / 'sub' / 'new.txt').write_bytes(b'after the restore')
        assert laptop.note_changed(photos.oaio_id, 'sub/new.txt')
        synced(laptop, tablet)
        assert (tablet.files_root(photos.oaio_id) / 'sub' / 'new.txt').read_bytes() == b'after the restore'

        # carol's object is at a version acknowledged before the backup ended, with its file
        carol = Api(server, 'carol', device='after')
        assert carol.login().ok
        head = carol.get('oaio_stampz/').json()[0]
        assert head['client_stamp'] in writer.acknowledged
        n = head['client_values']['n']
        answer = carol.get(f'files/busy/{head["client_stamp"]}/f.bin')
        assert answer.status_code == 200 and answer.content == b'%d' % n * 1000, answer.text
        assert answer.headers['X-OAIO-SHA256'] == sha(answer.content)
        # and carol writes on from there: the version after it, lost with the restore, once more; its
        # file is in the blob directory (copied after the database), as a file no row names
        lost = b'%d' % (n + 1) * 1000
        assert blob_file(data, sha(lost)).is_file()
        writer.session, writer.acknowledged, writer.n = carol, [head['client_stamp']], n
        assert writer.version()
        assert carol.get(f'files/busy/{writer.acknowledged[-1]}/f.bin').content == lost
        # every blob the restored database knows is in the restored blob directory
        assert blobs_without_file(server) == 0
    log = server.log()
    assert not logged_errors(log), log


def sqlite_env() -> dict:
    env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', OAIO_LOG_LEVEL='INFO')
    env.pop('DATABASE_URL', None)
    return env


def integrity_ok(backup: Path) -> None:
    with contextlib.closing(sqlite3.connect(backup / 'db.sqlite3')) as db:
        assert db.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'


def blobs_first(server: ServerProcess, writer: Writer, wrong: Path) -> None:
    """Why the database goes first: with the blobs copied first, the database copied after them names
    files the copy lacks (the versions acknowledged in between)."""
    wrong.mkdir()
    places = {'DATA': str(server.data), 'BACKUP': str(wrong)}
    run(SQLITE_BACKUP[2:], **places)
    writer.more(3)
    run(SQLITE_BACKUP[:1], **places)
    with contextlib.closing(sqlite3.connect(wrong / 'db.sqlite3')) as db:
        named = [row[0] for row in db.execute('SELECT sha256 FROM oaio_blob')]
    assert [h for h in named if not blob_file(wrong, h).is_file()], 'the wrong order lost nothing'


def sqlite_restore(server: ServerProcess, places: dict) -> None:
    run(SQLITE_RESTORE, **places)
    assert not (server.data / 'db.sqlite3-wal').exists()


@pytest.mark.parametrize('how', ['sqlite3 command', 'python sqlite3'])
def test_sqlite_backup_while_serving_and_restore(tmp_path, how):
    if os.environ.get('OAIO_TEST_DATABASE_URL'):
        pytest.skip('the PostgreSQL pass (OAIO_TEST_DATABASE_URL): the SQLite pass runs this one')
    if how == 'sqlite3 command' and not shutil.which('sqlite3'):
        pytest.skip('the sqlite3 command is not installed (apt-get install sqlite3)')
    commands = SQLITE_BACKUP if how == 'sqlite3 command' else [PYTHON_DB_BACKUP] + SQLITE_BACKUP[1:]
    backup_and_restore(tmp_path, sqlite_env(), commands, {}, sqlite_restore, check_backup=integrity_ok,
                       wrong_order=blobs_first if how == 'sqlite3 command' else None)


def test_postgres_backup_while_serving_and_restore(tmp_path):
    if not os.environ.get('OAIO_TEST_DATABASE_URL'):
        pytest.skip('OAIO_TEST_DATABASE_URL is not set (contrib/test sets it for its PostgreSQL pass)')
    if not shutil.which('pg_dump') or not shutil.which('pg_restore'):
        pytest.skip('pg_dump and pg_restore are not installed (apt-get install postgresql-client)')
    original, drop_original = postgres_database()
    restored, drop_restored = postgres_database()       # fresh and empty, as createdb makes it

    def restore(server: ServerProcess, places: dict) -> None:
        drop_original()                                 # nothing of the old database is left
        run(POSTGRES_RESTORE, **dict(places, DATABASE_URL=restored))
        server.env = dict(server.env, DATABASE_URL=restored)

    try:
        backup_and_restore(tmp_path, dict(sqlite_env(), DATABASE_URL=original), POSTGRES_BACKUP,
                           {'DATABASE_URL': original}, restore)
    finally:
        drop_original()
        drop_restored()
