"""Benchmark 9, the sync benchmarks of issue 11 (content engine), each timed from the last
``close()`` on device A; oaio is two mounts of one user (A and B, as in benchmark 4) on the
harness's server, the peer two Syncthing instances on this machine sharing one folder
(:class:`bench_lib.SyncthingPair`), or an rsync daemon on loopback for the client library's bulk
transfers.

9a  N small files in M folders, until all are on B         9e  upload of 1 GiB in 1,000 files (OaioClient)
9b  a 10-byte edit of one of them, until it is on B         9f  copy a 1 GiB file into the mount, until on the server
9c  1 byte changed in the middle of a 1 GiB file            9g  initial download of 1 GiB in 1,000 files
9d  1 MiB appended to the 1 GiB file

Used as a mix-in of :class:`bench_cases.Bench` (``self.server``, ``self.processes``, ``self.add`` …).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from bench_lib import (CountingProxy, OaioMount, Session, Stats, SyncthingPair, drop_caches, free_port, log,
                       speedup)

MiB = 1024 * 1024
SYNCTHING_TEMP = '.syncthing.'
RSYNC_MODULE = 'bench'


def _label(mib: int) -> str:
    return f'{mib} MiB' if mib < 1024 or mib % 1024 else f'{mib // 1024} GiB'


def _ratio(ours: Stats, peer: Stats | None, peer_name: str) -> tuple[str, float | None]:
    value = speedup(ours, peer) if peer is not None else None
    if value is None:
        return f'– {peer_name}', None
    return (f'{value:.2f}× {peer_name}' if value >= 0.1 else f'{value:.3g}× {peer_name}'), value


def stored_bytes(data: Path) -> int:
    """Bytes the server keeps in its data directory: every file's size, except SQLite databases,
    counted as their used pages (page_count - freelist_count, WAL included, through a read-only
    connection: the WAL and a checkpoint's timing would otherwise show up as growth)."""
    total = 0
    for path in data.rglob('*'):
        if not path.is_file():
            continue
        name = path.name
        if name.endswith(('-wal', '-shm', '-journal')):
            continue
        if name.endswith(('.sqlite3', '.sqlite', '.db')):
            try:
                with sqlite3.connect(f'file:{path}?mode=ro', uri=True, timeout=30) as db:
                    pages, free = (db.execute(f'PRAGMA {pragma}').fetchone()[0]
                                   for pragma in ('page_count', 'freelist_count'))
                    total += (pages - free) * db.execute('PRAGMA page_size').fetchone()[0]
                continue
            except sqlite3.Error:
                pass
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total


def same_file(path: Path, reference: Path) -> bool:
    """Byte-for-byte comparison (1 MiB reads)."""
    try:
        if path.stat().st_size != reference.stat().st_size:
            return False
        with open(path, 'rb') as one, open(reference, 'rb') as other:
            while True:
                block = one.read(MiB)
                if block != other.read(MiB):
                    return False
                if not block:
                    return True
    except OSError:
        return False


def tree_listed(root: Path, expected: dict[str, bytes]) -> bool:
    """Every expected path is listed under ``root`` (one ``scandir`` per folder)."""
    folders: dict[str, set] = {}
    for relative in expected:
        folder, _, name = relative.rpartition('/')
        folders.setdefault(folder, set()).add(name)
    for folder, names in folders.items():
        try:
            with os.scandir(root / folder) as entries:
                present = {entry.name for entry in entries if not entry.name.startswith(SYNCTHING_TEMP)}
        except OSError:
            return False
        if not names <= present:
            return False
    return True


def tree_identical(root: Path, expected: dict[str, bytes]) -> bool:
    for relative, content in expected.items():
        try:
            with open(root / relative, 'rb') as file:
                if file.read() != content:
                    return False
        except OSError:
            return False
    return True


def wait_tree(root: Path, expected: dict[str, bytes], timeout: float, interval: float = 0.1) -> float | None:
    """perf_counter time at which every expected file was listed under ``root`` with its content
    verified byte for byte right after (untimed; if that check fails, the next complete listing
    that passes it counts); None after ``timeout`` s."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if tree_listed(root, expected):
            seen = time.perf_counter()
            if tree_identical(root, expected):
                return seen
        time.sleep(interval)
    return None


def wait_bytes(path: Path, offset: int, content: bytes, timeout: float, interval: float = 0.005) -> float | None:
    """perf_counter time at which ``path`` holds ``content`` at ``offset`` (open, pread, close per
    poll: a new open sees a replaced file), None after ``timeout`` s."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if os.pread(fd, len(content), offset) == content:
                    return time.perf_counter()
            finally:
                os.close(fd)
        except OSError:
            pass
        if time.perf_counter() > deadline:
            return None
        time.sleep(interval)


def write_random_file(path: Path, size: int) -> str:
    """A new file of random bytes (1 MiB writes); its sha256."""
    digest = hashlib.sha256()
    with open(path, 'wb') as out:
        for offset in range(0, size, MiB):
            block = os.urandom(min(MiB, size - offset))
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


class RsyncDaemon:
    """``rsync --daemon --no-detach`` on a free loopback port with one writable module over ``root``:
    the peer of the client library's bulk upload and download (9e, 9g), talking its own protocol
    over TCP as OaioClient talks HTTP. rsync does not fsync (OaioClient fsyncs every file)."""

    def __init__(self, processes, base: Path):
        self.root = base / 'rsync-module'
        self.root.mkdir()
        self.port = free_port()
        config = base / 'rsyncd.conf'
        config.write_text(f'use chroot = no\npid file = {base / "rsyncd.pid"}\n[{RSYNC_MODULE}]\n'
                          f'path = {self.root}\nread only = no\nuid = {os.getuid()}\ngid = {os.getgid()}\n')
        self.started = processes.start('rsync daemon', ['rsync', '--daemon', '--no-detach', f'--port={self.port}',
                                                        '--address=127.0.0.1', f'--config={config}'],
                                       base / 'rsyncd.out')
        self.processes = processes
        deadline = time.monotonic() + 20
        while subprocess.run(['rsync', f'rsync://127.0.0.1:{self.port}/'], capture_output=True).returncode:
            if self.started.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('the rsync daemon did not start')
            time.sleep(0.1)

    def url(self, folder: str) -> str:
        return f'rsync://127.0.0.1:{self.port}/{RSYNC_MODULE}/{folder}/'

    def copy(self, source: str, target: str) -> float:
        started = time.perf_counter()
        subprocess.run(['rsync', '-a', '--whole-file', source, target], check=True, capture_output=True)
        return time.perf_counter() - started

    def stop(self) -> None:
        self.processes.stop(self.started, grace=20)


class SyncCases:
    """The cases of benchmark 9 (a mix-in of Bench)."""

    def bench_issue11(self) -> None:
        cfg = self.config
        self.syncthing = None
        self.missing11: dict[str, str] = {}
        if shutil.which('syncthing'):
            self.results.facts['syncthing'] = (f'{SyncthingPair.version()}, two instances on loopback, fsWatcher '
                                               f'delay {cfg.watch_delay} s (Syncthing\'s default: 10 s)')
        else:
            self.missing11['Syncthing'] = 'not installed'
            log('9: Syncthing is not installed (apt-get install -y syncthing): measuring oaio alone')
        sync_cases = [case for case in 'abcd' if self.wanted('9' + case)]
        if sync_cases:
            user = self.server.adduser('sync11')
            self.proxy11 = CountingProxy(self.server)
            self.mount_a = OaioMount(self.processes, self.proxy11, self.base, user, 'desk').start()
            self.mount_b = OaioMount(self.processes, self.server, self.base, user, 'couch').start()
            try:
                if 'Syncthing' not in self.missing11:
                    self.syncthing = SyncthingPair(self.processes, self.base, cfg.watch_delay).start()
                if 'a' in sync_cases or 'b' in sync_cases:
                    self.bench_many_files(edit='b' in sync_cases, create='a' in sync_cases)
                if 'c' in sync_cases or 'd' in sync_cases:
                    self.bench_big_file_change(flip='c' in sync_cases, append='d' in sync_cases)
                problems = self.mount_a.log_problems() + self.mount_b.log_problems()
                if problems:
                    self.results.notes.append('9: the mounts logged errors: ' + '; '.join(problems[:3]))
                if self.syncthing is not None:
                    problems = [line for line in self.syncthing.log_problems() if 'privileged' not in line]
                    if problems:
                        self.results.notes.append('9: Syncthing logged warnings: ' + '; '.join(problems[:3]))
            finally:
                if self.syncthing is not None:
                    self.syncthing.stop()
                self.mount_b.stop()
                self.mount_a.stop()
                self.proxy11.close()
        if self.wanted('9e') or self.wanted('9g'):
            self.bench_bulk_transfers()
        if self.wanted('9f'):
            self.bench_copy_in()

    # helpers -------------------------------------------------------------------------------

    def settle11(self) -> None:
        """Both mounts uploaded everything and are idle; Syncthing's two sides are in sync and idle."""
        self.mount_a.wait_idle()
        self.mount_b.wait_idle()
        if self.syncthing is not None:
            self.syncthing.wait_idle()

    def contestants(self, rep: int) -> list[str]:
        order = ['oaio'] + (['Syncthing'] if self.syncthing is not None else [])
        return order[rep % len(order):] + order[:rep % len(order)]

    def roots11(self, name: str) -> tuple[Path, Path]:
        """(A's folder, B's folder) of a contestant."""
        if name == 'oaio':
            return self.mount_a.path, self.mount_b.path
        return self.syncthing.a.folder, self.syncthing.b.folder

    def sent11(self, name: str) -> int:
        return self.proxy11.sent if name == 'oaio' else self.syncthing.a.bytes_out()

    def values11(self, runs: dict, unit: str, higher: bool) -> dict:
        values = {'oaio': Stats(runs.get('oaio', []), unit, higher)}
        if self.syncthing is not None:
            values['Syncthing'] = Stats(runs.get('Syncthing', []), unit, higher)
        elif 'Syncthing' in self.missing11:
            values['Syncthing'] = Stats([], unit, higher, note='not installed')
        return values

    # 9a + 9b: many small files, then a small edit of one ----------------------------------------

    def bench_many_files(self, edit: bool, create: bool) -> None:
        cfg = self.config
        n, folders = cfg.many_files, cfg.many_folders
        per_folder = -(-n // folders)
        expected = {f'dir-{index // per_folder:03d}/file-{index:05d}.bin': os.urandom(cfg.small_bytes)
                    for index in range(n)}
        log(f'9a: {n:,} files of {cfg.small_bytes} bytes in {folders} folders, until all are on B')
        seconds: dict[str, list] = {}
        timeout = max(600.0, n / 5)
        for name in self.contestants(0):
            root_a, root_b = self.roots11(name)
            if name == 'oaio':
                (root_a / 'many').mkdir()          # an object of its own
                self.settle11()
            top_a, top_b = root_a / 'many', root_b / 'many'
            top_a.mkdir(exist_ok=True)
            started = time.perf_counter()
            for folder in sorted({path.rpartition('/')[0] for path in expected}):
                (top_a / folder).mkdir()
            for relative, content in expected.items():
                with open(top_a / relative, 'wb') as file:
                    file.write(content)
            closed = time.perf_counter()
            seen = wait_tree(top_b, expected, timeout)
            seconds.setdefault(name, []).append(seen - closed if seen is not None else None)
            # the peers start while A still writes (oaio's flusher after 2 s of a burst, Syncthing's
            # watcher after its delay): the whole span too, for comparing runs
            self.results.facts[f'9a {name}: writing the files on A / first write until all on B'] = \
                f'{closed - started:.1f} s / ' + (f'{seen - started:.1f} s' if seen is not None else 'not on B')
            log(f'9a: {name}: ' + (f'{seen - closed:.1f} s' if seen is not None else f'not on B in {timeout:.0f} s'))
            self.settle11()
        if create:
            stats = self.values11(seconds, 's', False)
            text, value = _ratio(stats['oaio'], stats.get('Syncthing'), 'Syncthing')
            ours = stats['oaio'].median
            met = None if ours is None else ours <= 10 and (value is None or value > 1)
            self.add('9a', f'{n:,} files of {cfg.small_bytes} B in {folders} folders, last close() on A until all '
                     'are on B (s)', stats, text, '≤ 10 s, and faster than Syncthing', met)
            if ours:
                self.results.facts[f'9a oaio files/s ({n:,} files)'] = f'{n / ours:.0f}'
        if edit:
            self.bench_small_edit(expected)

    def bench_small_edit(self, expected: dict[str, bytes]) -> None:
        cfg = self.config
        relative = sorted(expected)[len(expected) // 2]
        content = bytearray(expected[relative])
        log(f'9b: a 10-byte edit of many/{relative} ({len(expected):,} files), {cfg.reps_edit} runs')
        seconds: dict[str, list] = {}
        sent: dict[str, list] = {}
        stored: list = []
        for rep in range(cfg.reps_edit):
            for name in self.contestants(rep):
                root_a, root_b = self.roots11(name)
                before_sent = self.sent11(name)
                before_stored = stored_bytes(self.server.data) if name == 'oaio' else 0
                new = bytearray(content)
                new[100:110] = f'edit{rep:06d}'.encode()
                with open(root_a / 'many' / relative, 'r+b') as file:
                    file.seek(100)
                    file.write(new[100:110])
                closed = time.perf_counter()
                seen = wait_bytes(root_b / 'many' / relative, 100, bytes(new[100:110]), 120)
                if seen is not None and (root_b / 'many' / relative).read_bytes() != bytes(new):
                    log(f'9b: {name}: B has the edit but not the rest of the file')
                    seen = None
                seconds.setdefault(name, []).append(seen - closed if seen is not None else None)
                self.settle11()
                sent.setdefault(name, []).append(self.sent11(name) - before_sent)
                if name == 'oaio':
                    stored.append(stored_bytes(self.server.data) - before_stored)
            content = new
        n = f'{len(expected):,}'
        stats = self.values11(seconds, 's', False)
        text, _ = _ratio(stats['oaio'], stats.get('Syncthing'), 'Syncthing')
        ours = stats['oaio'].median
        self.add('9b', f'10-byte edit of one file of {n}, last close() on A until on B (s)', stats, text,
                 '≤ 0.5 s on B', None if ours is None else ours <= 0.5)
        stats = self.values11(sent, 'bytes', False)
        text, _ = _ratio(stats['oaio'], stats.get('Syncthing'), 'Syncthing')
        self.add('9b', f'10-byte edit of one file of {n}: bytes sent by A (oaio: the mount to the server, its long '
                 'poll included; Syncthing: A to B)', stats, text, '–', None)
        stats = {'oaio': Stats(stored, 'bytes', False)}
        self.add('9b', f'10-byte edit of one file of {n}: bytes stored by the server per version', stats, '–',
                 '≤ 4 KiB per version', None if stats['oaio'].median is None else stats['oaio'].median <= 4096)

    # 9c + 9d: a big file changed by one byte, then appended to ----------------------------------

    def bench_big_file_change(self, flip: bool, append: bool) -> None:
        cfg = self.config
        size = cfg.big_mib * MiB
        label = _label(cfg.big_mib)
        reference = self.base / 'big-reference.bin'
        write_random_file(reference, size)
        log(f'9c/9d: a {label} file: set-up (copied to A, until on B)')
        for name in self.contestants(0):
            root_a, root_b = self.roots11(name)
            if name == 'oaio':
                (root_a / 'big').mkdir()
            else:
                (root_a / 'big').mkdir(exist_ok=True)
            started = time.perf_counter()
            shutil.copyfile(reference, root_a / 'big' / 'big.bin')
            copied = time.perf_counter()
            seen = wait_bytes(root_b / 'big' / 'big.bin', size - 16, _tail(reference, 16), 1800, interval=0.05)
            if seen is None or not same_file(root_b / 'big' / 'big.bin', reference):
                raise RuntimeError(f'9c: {name}: the {label} file did not arrive on B')
            self.results.facts[f'9c set-up, {name}: new {label} file from A to B'] = \
                f'{seen - copied:.1f} s after the copy ({copied - started:.1f} s)'
            self.settle11()
        cases = ([('9c', 'flip')] if flip else []) + ([('9d', 'append')] if append else [])
        for number, kind in cases:
            log(f'{number}: {kind} the {label} file, {cfg.reps_big} runs')
            seconds: dict[str, list] = {}
            sent: dict[str, list] = {}
            stored: list = []
            for rep in range(cfg.reps_big):
                # the same change for every contestant: the reference is changed once per run
                if kind == 'flip':
                    offset = size // 2 + rep * 4099
                    with open(reference, 'r+b') as file:
                        file.seek(offset)
                        old = file.read(1)
                        change = bytes([old[0] ^ 0xff])
                        file.seek(offset)
                        file.write(change)
                else:
                    change = os.urandom(cfg.append_mib * MiB)
                    offset = reference.stat().st_size
                    with open(reference, 'ab') as file:
                        file.write(change)
                probe = change[-16:]
                probe_at = offset + len(change) - len(probe)
                for name in self.contestants(rep):
                    root_a, root_b = self.roots11(name)
                    before_sent = self.sent11(name)
                    before_stored = stored_bytes(self.server.data) if name == 'oaio' else 0
                    with open(root_a / 'big' / 'big.bin', 'r+b') as file:
                        file.seek(offset)
                        file.write(change)
                    closed = time.perf_counter()
                    seen = wait_bytes(root_b / 'big' / 'big.bin', probe_at, probe, 600, interval=0.01)
                    if seen is not None and not same_file(root_b / 'big' / 'big.bin', reference):
                        log(f'{number}: {name}: B has the change but its file differs from A\'s')
                        seen = None
                    seconds.setdefault(name, []).append(seen - closed if seen is not None else None)
                    log(f'{number}: {name}: ' + (f'{seen - closed:.2f} s' if seen is not None else 'not on B'))
                    self.settle11()
                    sent.setdefault(name, []).append(self.sent11(name) - before_sent)
                    if name == 'oaio':
                        stored.append(stored_bytes(self.server.data) - before_stored)
            what = (f'1 byte changed in the middle of a {label} file' if kind == 'flip'
                    else f'{cfg.append_mib} MiB appended to a {label} file')
            limit = 4 * MiB if kind == 'flip' else (cfg.append_mib + 5) * MiB
            stats = self.values11(seconds, 's', False)
            text, _ = _ratio(stats['oaio'], stats.get('Syncthing'), 'Syncthing')
            ours = stats['oaio'].median
            self.add(number, f'{what}, last close() on A until on B (s)', stats, text, '≤ 2 s on B',
                     None if ours is None else ours <= 2)
            stats = self.values11(sent, 'bytes', False)
            text, _ = _ratio(stats['oaio'], stats.get('Syncthing'), 'Syncthing')
            ours = stats['oaio'].median
            self.add(number, f'{what}: bytes sent by A (oaio: the mount to the server; Syncthing: A to B)', stats,
                     text, f'≤ {limit // MiB} MiB sent', None if ours is None else ours <= limit)
            stats = {'oaio': Stats(stored, 'bytes', False)}
            ours = stats['oaio'].median
            self.add(number, f'{what}: bytes stored by the server (growth of its data directory)', stats, '–',
                     f'≤ {limit // MiB} MiB stored' if kind == 'flip' else '–',
                     (None if ours is None else ours <= limit) if kind == 'flip' else None)
        reference.unlink()

    # 9e + 9g: the client library's bulk upload and a fresh device's download -------------------

    def bench_bulk_transfers(self) -> None:
        cfg = self.config
        per_file = cfg.big_mib * MiB // cfg.bulk_files11
        size = per_file * cfg.bulk_files11
        label = _label(cfg.big_mib)
        rsync = None
        if shutil.which('rsync'):
            rsync = RsyncDaemon(self.processes, self.base)
        else:
            self.missing11['rsync'] = 'not installed'
        try:
            up: dict[str, list] = {}
            users = []
            for rep in range(cfg.reps_bulk):
                folder = self.source / f'bulk11-{rep}'
                folder.mkdir()
                for index in range(cfg.bulk_files11):
                    (folder / f'part-{index:04d}.bin').write_bytes(os.urandom(per_file))
                user = self.server.adduser(f'bulk11-{rep}')
                users.append(user)
                log(f'9e: upload of {label} in {cfg.bulk_files11} files, run {rep + 1}')
                for name in (['oaio', 'rsync'] if rep % 2 == 0 else ['rsync', 'oaio']):
                    if name == 'rsync':
                        if rsync is not None:
                            seconds = rsync.copy(f'{folder}/', rsync.url(f'up-{rep}'))
                            up.setdefault('rsync', []).append(size / seconds / 1e6)
                        continue
                    client = self.client(user, self.base / f'client-bulk11-{rep}', device='uploader')
                    try:
                        started = time.perf_counter()
                        client.register_folder(str(folder))
                        if not client.synchronize_with_server_if_online():
                            raise RuntimeError(f'9e: upload failed: {client.error_message}')
                        up.setdefault('oaio', []).append(size / (time.perf_counter() - started) / 1e6)
                    finally:
                        client.close()
                        shutil.rmtree(client.client_root, ignore_errors=True)
                shutil.rmtree(folder)
            if self.wanted('9e'):
                stats = self.peer_values(up, 'rsync', 'MB/s', True)
                text, _ = _ratio(stats['oaio'], stats.get('rsync'), 'rsync daemon')
                self.add('9e', f'upload of {label} in {cfg.bulk_files11} files through OaioClient (MB/s)', stats, text,
                         '≥ 300 MB/s', None if stats['oaio'].median is None else stats['oaio'].median >= 300)
            if self.wanted('9g'):
                down: dict[str, list] = {}
                for rep in range(cfg.reps_bulk):
                    log(f'9g: initial download of {label} in {cfg.bulk_files11} files, run {rep + 1}')
                    for name in (['oaio', 'rsync'] if rep % 2 == 0 else ['rsync', 'oaio']):
                        drop_caches()
                        if name == 'rsync':
                            if rsync is not None:
                                target = self.base / f'rsync-down-{rep}'
                                seconds = rsync.copy(rsync.url('up-0'), f'{target}/')
                                got = sum(entry.stat().st_size for entry in target.rglob('*') if entry.is_file())
                                shutil.rmtree(target)
                                if got != size:
                                    raise RuntimeError(f'9g: rsync got {got} bytes instead of {size}')
                                down.setdefault('rsync', []).append(size / seconds / 1e6)
                            continue
                        seconds, client = self.initial_sync(users[0], f'bulk11-down-{rep}')
                        try:
                            got = sum(entry.stat().st_size for oaio_id in client.client_objectz
                                      for entry in Path(client.files_root(oaio_id)).rglob('*') if entry.is_file())
                        finally:
                            client.close()
                            shutil.rmtree(client.client_root, ignore_errors=True)
                        if got != size:
                            raise RuntimeError(f'9g: the fresh client got {got} bytes instead of {size}')
                        down.setdefault('oaio', []).append(size / seconds / 1e6)
                stats = self.peer_values(down, 'rsync', 'MB/s', True)
                text, _ = _ratio(stats['oaio'], stats.get('rsync'), 'rsync daemon')
                self.add('9g', f'initial download of {label} in {cfg.bulk_files11} files by a fresh client (MB/s; page '
                         'cache dropped)', stats, text, '≥ 250 MB/s',
                         None if stats['oaio'].median is None else stats['oaio'].median >= 250)
        finally:
            if rsync is not None:
                rsync.stop()

    def peer_values(self, runs: dict, peer: str, unit: str, higher: bool) -> dict:
        values = {'oaio': Stats(runs.get('oaio', []), unit, higher)}
        if peer in runs:
            values[peer] = Stats(runs[peer], unit, higher)
        elif peer in self.missing11:
            values[peer] = Stats([], unit, higher, note=self.missing11[peer])
        return values

    # 9f: a big file copied into the mount until the server has it ------------------------------

    def bench_copy_in(self) -> None:
        cfg = self.config
        size = cfg.big_mib * MiB
        label = _label(cfg.big_mib)
        user = self.server.adduser('copyin11')
        mount = OaioMount(self.processes, self.server, self.base, user, 'copier').start()
        watcher = Session(self.server, user, device='watcher')
        seconds = []
        try:
            for rep in range(cfg.reps_big):
                log(f'9f: copy a {label} file into the mount until on the server, run {rep + 1}')
                source = self.base / 'copy-source.bin'
                digest = write_random_file(source, size)
                folder = mount.path / f'copy-{rep}'
                folder.mkdir()
                mount.wait_idle()
                oaio_id = self._object_id(watcher, folder.name)
                cursor = watcher.get('changes/').json()['cursor']
                os.sync()
                started = time.perf_counter()
                shutil.copyfile(source, folder / 'big.bin')
                copied = time.perf_counter()
                done = None
                while done is None and time.perf_counter() < started + 1800:
                    answer = watcher.get('changes/', params={'since': cursor, 'wait': 30}).json()
                    for entry in answer.get('changes', []):
                        if (entry.get('oaio') or {}).get('oaio_id') == oaio_id and \
                                ((entry.get('files') or {}).get('big.bin') or {}).get('sha256') == digest:
                            done = time.perf_counter()
                    cursor = answer['cursor']
                seconds.append(done - started if done is not None else None)
                log('9f: ' + (f'{done - started:.1f} s (cp {copied - started:.1f} s)' if done else 'not uploaded'))
                mount.wait_idle()
                shutil.rmtree(folder)
                source.unlink()
                mount.wait_idle()
            problems = mount.log_problems()
            if problems:
                self.results.notes.append('9f: the mount logged errors: ' + '; '.join(problems[:3]))
        finally:
            mount.stop()
        stats = {'oaio': Stats(seconds, 's', False)}
        ours = stats['oaio'].median
        self.add('9f', f'copy a {label} file into the mount until it is on the server (s; cp included, the '
                 'source in the page cache)', stats, '–', '≤ 5 s', None if ours is None else ours <= 5)


def _tail(path: Path, count: int) -> bytes:
    with open(path, 'rb') as file:
        file.seek(-count, os.SEEK_END)
        return file.read()
