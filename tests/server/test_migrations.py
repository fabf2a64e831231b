"""Migration 0003 turns the full file manifests stored with every version (Version.files) into runs
of file rows, and drops _file_paths from the stored values — on a database written by the schema
before it, then served: every version answers its files and path list as it did."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from oaio_testing import PASSWORD, Api, ServerProcess, postgres_database, sha

A, B, C = b'a\n', b'b\n', b'c\n'


def manage(data, *args) -> None:
    result = subprocess.run([sys.executable, '-m', 'oaio.server.cli', 'manage', *args],
                            env={**os.environ, 'OAIO_DATA': str(data), 'OAIO_PASSWORD_HASHER': 'fast'},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_old_manifests_become_runs_and_versions_answer_as_before(tmp_path):
    if postgres_database():
        pytest.skip('written for SQLite: the old rows are put in with SQL of its dialect')
    data = tmp_path / 'data'
    data.mkdir()
    manage(data, 'migrate')                    # everything, then oaio back to the schema before 0003
    manage(data, 'migrate', 'oaio', '0002')
    manage(data, 'shell', '-c', f"from django.contrib.auth.models import User; "
                                f"User.objects.create_user('alice', password='{PASSWORD}')")
    versions = [  # stamp, files
        ('20261201000000000001', {'a.txt': A, 'b.txt': B}),
        ('20261201000000000002', {'a.txt': A, 'b.txt': C}),             # b changed
        ('20261201000000000003', {'a.txt': A}),                         # b removed
        ('20261201000000000004', {'a.txt': A, 'b.txt': B, 'c.txt': C}),  # b back, c new
    ]
    database = sqlite3.connect(data / 'db.sqlite3')
    with database:
        user = database.execute("SELECT id FROM auth_user WHERE username = 'alice'").fetchone()[0]
        database.execute("INSERT INTO oaio_oaiobject (oaio_id, owner_id, csh_id, created) "
                         "VALUES ('old', ?, 'oaio', '2026-12-01 00:00:00')", (user,))
        obj = database.execute("SELECT id FROM oaio_oaiobject WHERE oaio_id = 'old'").fetchone()[0]
        for content in (A, B, C):
            database.execute("INSERT INTO oaio_blob (sha256, size, stored) VALUES (?, ?, '2026-12-01 00:00:00')",
                             (sha(content), len(content)))
            database.execute("INSERT INTO oaio_objectblob (oai_object_id, blob_id) VALUES (?, ?)", (obj, sha(content)))
            path = data / 'blobs' / sha(content)[:2] / sha(content)[2:4] / sha(content)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        for stamp, files in versions:
            values = {'_name': 'Old', '_file_paths': sorted(files)}
            manifest = {path: {'sha256': sha(content), 'size': len(content)} for path, content in files.items()}
            database.execute('INSERT INTO oaio_version (oai_object_id, stamp, server_stamp, "values", files, user_id, '
                             "device_id, app_id) VALUES (?, ?, ?, ?, ?, ?, 'dev', 'app')",
                             (obj, stamp, stamp, json.dumps(values), json.dumps(manifest), user))
        head = database.execute('SELECT max(id) FROM oaio_version').fetchone()[0]
        database.execute('UPDATE oaio_oaiobject SET head_id = ? WHERE id = ?', (head, obj))
        database.execute("INSERT INTO oaio_subscription (oai_object_id, user_id, access_right) VALUES (?, ?, 'C')",
                         (obj, user))
    database.close()

    server = ServerProcess(data=data, env={**os.environ, 'OAIO_PASSWORD_HASHER': 'fast'})
    server.start()              # migrates to the newest schema
    try:
        alice = Api(server, 'alice')
        assert alice.login().ok
        runs = sqlite3.connect(f'file:{data / "db.sqlite3"}?mode=ro', uri=True)
        rows = runs.execute('SELECT path, sha256, since, until FROM oaio_filerow ORDER BY path, since').fetchall()
        stored_values = [json.loads(values) for (values,) in runs.execute('SELECT "values" FROM oaio_version')]
        runs.close()
        assert len(rows) == 5, rows            # a.txt once; b.txt three runs; c.txt once
        assert all('_file_paths' not in values for values in stored_values)
        head = alice.get('oaio_stampz/').json()[0]
        assert head['client_values'] == {'_name': 'Old', '_file_paths': ['a.txt', 'b.txt', 'c.txt']}
        for stamp, files in versions:
            whole = alice.get(f'manifest/old/{stamp}').json()
            assert sorted(whole['files']) == sorted(files) and whole['file_paths'] is True
            for path, content in files.items():
                assert alice.get(f'files/old/{stamp}/{path}').content == content, (stamp, path)
        assert alice.get(f'files/old/{versions[2][0]}/b.txt').status_code == 404
    finally:
        server.stop()
