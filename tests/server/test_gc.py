"""Garbage collection and stats (contrib/server/gc.py, ``oaio-server gc`` and ``stats``): chunks no
version and no staged file names are reclaimed, nothing a version needs ever is — also while uploads
race the collector."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading

from oaio import protocol as p

from oaio_testing import Api, running_server, sha, wait_for

_stamps = itertools.count(1)


def new_stamp() -> str:
    return f'2026120214{next(_stamps):010d}'


def pack(*chunks: bytes) -> bytes:
    return b''.join(p.pack_header(sha(chunk), len(chunk)) + chunk for chunk in chunks)


def send(session, *chunks: bytes):
    return session.post('chunks/', data=pack(*chunks), headers={'Content-Type': 'application/x-oaio-pack'})


def register(session, oaio_id: str, files: dict, stamp: str = ''):
    return session.post('register/', json={'oaio_id': oaio_id, 'client_stamp': stamp or new_stamp(),
                                           'client_values': {'_file_paths': sorted(files)}, 'files': files})


def stored_files(server) -> set[str]:
    return {path.name for path in (server.data / 'blobs').rglob('*') if path.is_file()}


def gc(server, *args: str, **env: str) -> dict:
    """``oaio-server gc --json ARGS`` on the server's data directory; its result."""
    command = [sys.executable, '-m', 'oaio.server.cli', 'gc', '--json', *args, '--data', str(server.data)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(server.env, **env), timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stats(server) -> dict:
    result = server.run_cli('stats', '--json')
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_chunks_of_a_deleted_object_are_reclaimed_others_kept(api, server):
    alice, bob = api('alice'), api('bob')
    mine, shared, bobs = os.urandom(3000), os.urandom(4000), os.urandom(5000)
    assert send(alice, mine, shared).ok and send(bob, shared, bobs).ok
    assert register(alice, 'doomed', {'m.bin': sha(mine), 's.bin': sha(shared)}).ok
    assert register(bob, 'kept', {'s.bin': sha(shared), 'b.bin': sha(bobs)}).ok
    assert alice.post('delete/', json={'oaio_id': 'doomed'}).ok
    # within the grace (default: a day) nothing goes
    assert gc(server)['chunks'] == 0
    assert {sha(mine), sha(shared), sha(bobs)} <= stored_files(server)
    # a dry run counts and deletes nothing
    dry = gc(server, '--grace', '0', '--dry-run')
    assert (dry['chunks'], dry['bytes'], dry['dry_run']) == (1, len(mine), True)
    assert sha(mine) in stored_files(server)
    result = gc(server, '--grace', '0')
    assert (result['chunks'], result['bytes'], result['files']) == (1, len(mine), 1)
    files = stored_files(server)
    assert sha(mine) not in files and {sha(shared), sha(bobs)} <= files
    # alice no longer holds what was collected: she must send it again
    assert alice.post('blobs/missing/', json={'sha256': [sha(mine)]}).json()['missing'] == [sha(mine)]
    refused = register(alice, 'again', {'m.bin': sha(mine)})
    assert refused.status_code == 400 and refused.json()['missing'] == ['m.bin']
    assert send(alice, mine).json() == {'received': 1, 'stored': 1}
    stamp = new_stamp()
    assert register(alice, 'again', {'m.bin': sha(mine)}, stamp).ok
    assert alice.get(f'files/again/{stamp}/m.bin').content == mine
    # a chunk only sent (held, named by no version) is not kept by its holder
    assert gc(server, '--grace', '0')['chunks'] == 0
    lone = os.urandom(100)
    assert send(bob, lone).ok
    assert gc(server, '--grace', '0')['chunks'] == 1
    assert sha(lone) not in stored_files(server)
    # the human-readable command says what it did
    out = server.run_cli('gc', '--grace', '0')
    assert out.returncode == 0 and 'removed 0 chunks' in out.stdout and 'staged files' in out.stdout, out.stdout


def test_staged_files_protect_their_chunks_until_they_expire(api, server):
    bob = api('bob')
    content = os.urandom(2000)
    stamp = new_stamp()
    put = bob.request('put', f'files/abandoned/{stamp}/a.txt', data=content)
    assert put.status_code == 201, put.text
    result = gc(server, '--grace', '0')
    assert (result['chunks'], result['staged_files']) == (0, 0)
    assert sha(content) in stored_files(server)
    assert stats(server)['staged_files'] == 1
    # expired (OAIO_STAGED_DAYS): the staged file goes, with its chunk, in one run
    result = gc(server, '--grace', '0', OAIO_STAGED_DAYS='0')
    assert (result['staged_files'], result['chunks']) == (1, 1)
    assert sha(content) not in stored_files(server) and stats(server)['staged_files'] == 0


def test_orphan_files_are_removed(api, server):
    alice = api('alice')
    kept = os.urandom(1000)
    assert send(alice, kept).ok and register(alice, 'o', {'k.bin': sha(kept)}).ok
    blobs = server.data / 'blobs'
    orphan_hash = sha(b'a crash left me')
    orphan = blobs / orphan_hash[:2] / orphan_hash[2:4] / orphan_hash
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b'a crash left me')
    stray = blobs / 'ab' / 'cd' / 'not-a-hash'
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b'xy')
    assert gc(server)['orphans'] == 0             # younger than the grace
    assert gc(server, '--grace', '0', '--dry-run')['orphans'] == 2 and orphan.exists()
    result = gc(server, '--grace', '0')
    assert (result['orphans'], result['orphan_bytes']) == (2, len(b'a crash left me') + 2)
    assert not orphan.exists() and not stray.exists()
    assert sha(kept) in stored_files(server)


def test_stats_count_what_was_uploaded(api, server):
    alice, bob = api('alice'), api('bob')
    one, two = os.urandom(30000), os.urandom(10000)
    assert send(alice, one, two).ok and send(bob, one).ok
    first = new_stamp()
    assert register(alice, 'a', {'1.bin': sha(one), '2.bin': sha(two)}, first).ok
    second = new_stamp()
    assert alice.post('upload/', json={'oaio_id': 'a', 'client_stamp': second, 'server_stamp': first,
                                       'client_values': {'_file_paths': ['1.bin']}, 'files': {'1.bin': sha(one)}}).ok
    assert register(bob, 'b', {'x.bin': sha(one), 'y.bin': sha(one)}).ok
    numbers = stats(server)
    assert numbers['objects'] == 2 and numbers['versions'] == 3 and numbers['users'] == 2
    assert numbers['chunks'] == 2 and numbers['stored_bytes'] == len(one) + len(two)
    assert numbers['head_files'] == 3 and numbers['logical_bytes'] == 3 * len(one)
    assert numbers['dedup_ratio'] == round(3 * len(one) / (len(one) + len(two)), 3)
    assert numbers['dedup_ratio'] > 1             # two objects and three paths hold one content
    assert register(alice, 'c', {'again.bin': sha(one)}).ok
    assert stats(server)['logical_bytes'] == 4 * len(one) and stats(server)['chunks'] == 2
    text = server.run_cli('stats')
    assert text.returncode == 0 and 'dedup ratio' in text.stdout and 'stored bytes' in text.stdout, text.stdout


def test_the_server_collects_periodically(tmp_path, monkeypatch):
    monkeypatch.setenv('OAIO_GC_INTERVAL_SECONDS', '1')
    monkeypatch.setenv('OAIO_GC_GRACE_SECONDS', '0')
    with running_server(tmp_path / 'data') as server:
        server.adduser('alice')
        alice = Api(server, 'alice')
        assert alice.login().ok
        gone = os.urandom(500)
        # with no grace the server may collect the chunk between the pack and the version (that is what
        # the grace is for): then the version is refused as naming a missing file, and sent again
        wait_for(lambda: send(alice, gone).ok and register(alice, 'x', {'g.bin': sha(gone)}).ok, what='the version')
        assert alice.post('delete/', json={'oaio_id': 'x'}).ok
        wait_for(lambda: sha(gone) not in stored_files(server), what='the periodic collection')
        wait_for(lambda: 'garbage collection (grace 0 s): removed' in server.log(), what='its log line')
    assert 'ERROR' not in server.log(), server.log()


def test_gc_racing_uploads_never_loses_a_chunk_a_version_names(tmp_path, monkeypatch):
    """Threads send packs and register versions naming their chunks (some content shared between
    threads, some objects deleted again) while the collector runs with no grace, in the server
    (every second) and as the command in a loop. Afterwards every kept version's every file comes
    back whole."""
    monkeypatch.setenv('OAIO_GC_INTERVAL_SECONDS', '1')
    monkeypatch.setenv('OAIO_GC_GRACE_SECONDS', '0')
    pool = [os.urandom(700 + index) for index in range(6)]          # chunks every thread uses now and then
    kept: dict[tuple[str, str], dict[str, bytes]] = {}
    failures: list[str] = []
    done = threading.Event()
    collected = []
    with running_server(tmp_path / 'data') as server:
        server.adduser('alice')

        def uploader(number: int) -> None:
            session = Api(server, 'alice', device=f'd{number}')
            assert session.login().ok
            try:
                for round_ in range(12):
                    files = {'own.bin': os.urandom(2000), 'pool.bin': pool[(number + round_) % len(pool)]}
                    head, tail = os.urandom(1500), pool[(number * 7 + round_) % len(pool)]
                    big = head + tail
                    entry = {'sha256': sha(big), 'size': len(big),
                             'chunks': [[sha(head), len(head)], [sha(tail), len(tail)]]}
                    oaio_id, stamp = f't{number}-{round_}', new_stamp()
                    declared = {path: sha(content) for path, content in files.items()} | {'big.bin': entry}
                    for _attempt in range(20):
                        sent = send(session, *files.values(), head, tail)
                        if sent.status_code == 503:
                            continue                        # chunks collected before they were recorded
                        assert sent.status_code == 200, sent.text
                        answer = register(session, oaio_id, declared, stamp)
                        if answer.status_code == 200:
                            break
                        assert answer.status_code == 400 and answer.json().get('missing'), answer.text
                    else:
                        raise AssertionError(f'{oaio_id} was never registered')
                    if round_ % 3 == 2:
                        assert session.post('delete/', json={'oaio_id': oaio_id}).ok
                    else:
                        kept[(oaio_id, stamp)] = files | {'big.bin': big}
            except Exception as exc:  # noqa: BLE001
                failures.append(f'uploader {number}: {exc!r}')

        def collector() -> None:
            while not done.is_set():
                collected.append(gc(server, '--grace', '0'))

        threads = [threading.Thread(target=uploader, args=(n,)) for n in range(6)]
        gc_thread = threading.Thread(target=collector)
        gc_thread.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        gc_thread.join()
        assert not failures, failures
        collected.append(gc(server, '--grace', '0'))
        reader = Api(server, 'alice', device='reader')
        assert reader.login().ok
        for (oaio_id, stamp), files in kept.items():
            for path, content in files.items():
                got = reader.get(f'files/{oaio_id}/{stamp}/{path}')
                assert got.status_code == 200 and got.content == content, (oaio_id, path, got.status_code)
        assert len(kept) == 6 * 8
        assert sum(result['chunks'] for result in collected) > 0
        assert 'garbage collection (grace 0 s): removed' in server.log()
        log = server.log()
    assert 'ERROR' not in log, log
    print(f'{len(collected)} collections by the command, {sum(r["chunks"] for r in collected)} chunks, '
          f'{sum(r["orphans"] for r in collected)} orphans; server: {log.count("garbage collection (grace")} runs, '
          f'{log.count("collected meanwhile")} packs stored chunks again, {log.count("pack of alice refused")} refused')
