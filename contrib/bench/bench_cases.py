"""The benchmarks of issue 5, each measured for oaio and its peers in the same run on the same data.

1. sequential read of a big attached file (cold, then warm)     4. propagation between two mounts
2. sequential write with fsync                                  5. sync scaling with N objects
3. metadata in one directory of many files                      6. a fresh device's initial sync
7. the server: idle long-poll waiters, concurrent uploading clients
8. a one-file edit on the mount in an object of few and of many files
9. the sync benchmarks of issue 11 against Syncthing and rsync (9a–9g, see bench_sync.py)
"""
from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench_sync import SyncCases

from bench_lib import (PASSWORD, CountingProxy, OaioMount, PeerMount, Processes, Server, Session, Stats, Systems,
                       cpu_seconds, drop_caches, fetch_passthroughfs, log, quiesce, rclone_argv, reset_peak_rss,
                       speedup, status_kib, wait_disk_quiet, warm_memory, wire_bytes)

MiB = 1024 * 1024
PEERS = ('native', 'passthroughfs', 'rclone off', 'rclone full')
COLUMNS = ('oaio',) + PEERS + ('original protocol', 'Syncthing', 'rsync')
RCLONE_WRITE_BACK = 5          # s, rclone's default --vfs-write-back
PASSTHROUGHFS_FSYNC = Path(__file__).resolve().parent / 'passthroughfs_fsync.py'


@dataclass
class Config:
    quick: bool
    read_mib: int
    write_mib: int
    meta_files: int
    edits: int
    scaling_n: list
    small_objects: int
    bulk_mib: int
    bulk_files: int
    waiters: int
    uploaders: int
    uploads_each: int
    reps_io: int
    reps_meta: int
    reps_sync: int
    reps_initial: int
    idle_window: float
    # benchmark 9 (issue 11)
    many_files: int = 10000
    many_folders: int = 100
    small_bytes: int = 1024
    big_mib: int = 1024
    append_mib: int = 1
    bulk_files11: int = 1000
    reps_edit: int = 5
    reps_big: int = 3
    reps_bulk: int = 3
    watch_delay: int = 1              # s, Syncthing's fsWatcherDelayS (its default: 10)

    @classmethod
    def make(cls, quick: bool, files: int | None = None, big_mib: int | None = None) -> Config:
        if quick:
            config = cls(True, read_mib=32, write_mib=16, meta_files=200, edits=10, scaling_n=[10, 100, 1000],
                         small_objects=1000, bulk_mib=32, bulk_files=100, waiters=500, uploaders=20, uploads_each=2,
                         reps_io=2, reps_meta=2, reps_sync=3, reps_initial=1, idle_window=3.0,
                         many_files=300, many_folders=10, big_mib=32, bulk_files11=100, reps_edit=2, reps_big=1,
                         reps_bulk=1)
        else:
            config = cls(False, read_mib=1024, write_mib=512, meta_files=2000, edits=50, scaling_n=[100, 1000, 10000],
                         small_objects=10000, bulk_mib=1024, bulk_files=1000, waiters=500, uploaders=20,
                         uploads_each=5, reps_io=5, reps_meta=5, reps_sync=7, reps_initial=3, idle_window=10.0)
        if files:
            config.many_files, config.many_folders = files, max(1, min(config.many_folders, files // 10))
        if big_mib:
            config.big_mib = big_mib
            config.bulk_files11 = max(1, min(config.bulk_files11, big_mib))
        return config


@dataclass
class Row:
    """One line of the results table."""

    number: str
    name: str
    values: dict                    # column → Stats
    ratio: str
    target: str
    met: bool | None


@dataclass
class Results:
    rows: list = field(default_factory=list)
    scaling: list = field(default_factory=list)     # dicts per N (see bench_sync_scaling)
    facts: dict = field(default_factory=dict)       # machine and run facts
    notes: list = field(default_factory=list)       # observations of this run (memory, errors, ...)
    cold: bool = True


def ratio_text(ours: Stats, peer: Stats, peer_name: str) -> tuple[str, float | None]:
    value = speedup(ours, peer)
    return (f'{value:.2f}× {peer_name}' if value is not None else f'– {peer_name}'), value


class Bench(SyncCases):
    def __init__(self, config: Config, base: Path, only: set[str] | None = None):
        self.config, self.base, self.only = config, base, only
        self.processes = Processes()
        self.server = Server(self.processes, base)
        self.results = Results()
        self.systems = Systems()
        self.source = base / 'native'
        self.source.mkdir()
        self.alice: OaioMount | None = None
        self.peers: dict[str, PeerMount] = {}
        self.chunk = os.urandom(MiB)

    def wanted(self, number: str) -> bool:
        """``--only 9`` selects 9a–9g, ``--only 9b`` only 9b."""
        return self.only is None or number in self.only or (number[-1:].isalpha() and number[:-1] in self.only)

    def add(self, number: str, name: str, values: dict, ratio: str, target: str, met: bool | None) -> None:
        self.results.rows.append(Row(number, name, values, ratio, target, met))

    # set-up ------------------------------------------------------------------------------------

    def start(self) -> None:
        log(f'server on {self.base}')
        self.server.start()
        for user in ('alice', 'bob', 'load', 'idle', 'bulk'):
            self.server.adduser(user)
        if any(self.wanted(n) for n in '123'):
            self.start_file_systems()

    def start_file_systems(self) -> None:
        self.alice = OaioMount(self.processes, self.server, self.base, 'alice', 'laptop').start()
        (self.alice.path / 'bench').mkdir()
        self.systems.roots = {'oaio': self.alice.path / 'bench', 'native': self.source}
        self.systems.pids = {'oaio': self.alice.pid}
        script, why = fetch_passthroughfs(self.base)
        peers = {}
        if script is None:
            self.systems.missing['passthroughfs'] = why
            log(f'passthroughfs not measured: {why}')
        else:
            self.results.facts['passthroughfs'] = (f'examples/passthroughfs.py of the {why}, run by '
                                                   f'contrib/bench/{PASSTHROUGHFS_FSYNC.name} (adds an fsync handler)')
            peers['passthroughfs'] = lambda source, mnt: [sys.executable, str(PASSTHROUGHFS_FSYNC), str(script),
                                                          str(source), str(mnt)]
        if shutil.which('rclone'):
            version = subprocess.run(['rclone', 'version'], capture_output=True, text=True).stdout.splitlines()
            self.results.facts['rclone'] = version[0] if version else 'rclone'
            peers['rclone off'] = rclone_argv(self.base, 'off')
            peers['rclone full'] = rclone_argv(self.base, 'full')
        else:
            for name in ('rclone off', 'rclone full'):
                self.systems.missing[name] = 'rclone is not installed'
        for name, argv in peers.items():
            try:
                peer = PeerMount(self.processes, name, argv, self.source, self.base)
            except RuntimeError as exc:
                self.systems.missing[name] = str(exc).splitlines()[0]
                log(f'{name} not measured: {exc}')
                continue
            self.peers[name] = peer
            self.systems.roots[name] = peer.path
            self.systems.pids[name] = peer.pid
        self.alice.wait_idle()

    def stop_peers(self) -> None:
        for peer in self.peers.values():
            self.processes.stop(peer.started)
        self.peers = {}

    def settle(self, system: str, wrote: bool = False) -> None:
        """Let background work of ``system`` end before the next measurement."""
        if system == 'oaio':
            self.alice.wait_idle()
        elif system in self.peers:
            if wrote and system == 'rclone full' and not self.config.quick:
                time.sleep(RCLONE_WRITE_BACK + 1)   # its uploads begin only after the write-back delay
            self.peers[system].wait_idle()

    def systems_in_order(self) -> list[str]:
        return [name for name in ('oaio',) + PEERS if name in self.systems.roots]

    def systems_of_run(self, rep: int) -> list[str]:
        """The contestants of repetition ``rep``, rotated by one each time: with as many repetitions
        as contestants, each runs once in every position (first after the set-up, right after rclone
        full's gigabyte of writes, …), so no one's median carries the cost of one position."""
        order = self.systems_in_order()
        shift = rep % len(order)
        return order[shift:] + order[:shift]

    def stats_of(self, runs: dict, unit: str, higher: bool) -> dict:
        values = {name: Stats(runs.get(name, []), unit, higher) for name in self.systems_in_order()}
        for name in self.systems.missing:
            values[name] = Stats([], unit, higher, note='not run')
        return values

    # 1. sequential read --------------------------------------------------------------------------

    def bench_read(self) -> None:
        cfg = self.config
        size = cfg.read_mib * MiB
        label = f'{cfg.read_mib} MiB' if cfg.read_mib < 1024 else f'{cfg.read_mib // 1024} GiB'
        log(f'1: sequential read of {label}')
        big = self.source / 'big.bin'
        with open(big, 'wb') as out:
            for _ in range(cfg.read_mib):
                out.write(os.urandom(MiB))
        started = time.perf_counter()
        shutil.copyfile(big, self.systems.roots['oaio'] / 'big.bin')
        self.alice.wait_idle()
        self.results.facts['copy into the mount and upload'] = \
            f'{label} in {time.perf_counter() - started:.1f} s (cp, then the mount hashes and uploads it)'
        paths = {name: root / 'big.bin' for name, root in self.systems.roots.items()}
        cold: dict[str, list] = {}
        warm: dict[str, list] = {}
        reset_peak_rss(self.alice.pid)
        for rep in range(cfg.reps_io):
            for name in self.systems_of_run(rep):
                self.results.cold = drop_caches() and self.results.cold
                wait_disk_quiet(self.base)
                warm_memory(self.base, 2 * size)    # a FUSE read caches the data twice (see benchmark 2)
                cold.setdefault(name, []).append(read_throughput(paths[name], size))
                warm.setdefault(name, []).append(read_throughput(paths[name], size))
        self.results.facts['mount peak RSS, read'] = f'{status_kib(self.alice.pid, "VmHWM") / 1024:.0f} MiB'
        cold_stats = self.stats_of(cold, 'MB/s', True)
        warm_stats = self.stats_of(warm, 'MB/s', True)
        temperature = 'cold' if self.results.cold else 'warm (page cache not dropped)'
        ours = cold_stats['oaio']
        text, value = ratio_text(ours, cold_stats.get('passthroughfs', Stats([], '')), 'passthroughfs')
        self.add('1', f'sequential read {label}, {temperature} (MB/s)', cold_stats, text, '≥ 0.9× passthroughfs',
                 None if value is None else value >= 0.9)
        texts, values = [], []
        for peer in ('rclone off', 'rclone full'):
            text, value = ratio_text(ours, cold_stats.get(peer, Stats([], '')), peer)
            texts.append(text)
            values.append(value)
        met = None if None in values else min(values) >= 3
        self.add('1', f'sequential read {label}, {temperature} (MB/s)', cold_stats, ', '.join(texts),
                 '≥ 3× rclone mount', met)
        text, value = ratio_text(warm_stats['oaio'], warm_stats['native'], 'native')
        self.add('1', f're-read {label}, warm (MB/s)', warm_stats, text, '≥ 0.5× native',
                 None if value is None else value >= 0.5)
        (self.systems.roots['oaio'] / 'big.bin').unlink()
        big.unlink()
        self.alice.wait_idle()

    # 2. sequential write -------------------------------------------------------------------------

    def bench_write(self) -> None:
        cfg = self.config
        size = cfg.write_mib * MiB
        log(f'2: sequential write of {cfg.write_mib} MiB with fsync')
        runs: dict[str, list] = {}
        writes_only: dict[str, list] = {}
        failures: dict[str, str] = {}
        reset_peak_rss(self.alice.pid)
        for rep in range(cfg.reps_io):
            for name in self.systems_of_run(rep):
                path = self.systems.roots[name] / f'written-{name.replace(" ", "-")}.bin'
                # no contestant starts with the previous one's dirty pages still being written back
                # (rclone full leaves 1 GiB: its cache and its upload), and each starts with as much
                # freshly touched memory as it will fill (a FUSE write caches the data twice: in the
                # mount's page cache and in its backing file's)
                wait_disk_quiet(self.base)
                warm_memory(self.base, 2 * size)
                try:
                    total, writes = write_throughput(path, self.chunk, size)
                except OSError as exc:
                    total = writes = None
                    failures[name] = f'{exc.strerror}'
                runs.setdefault(name, []).append(total)
                writes_only.setdefault(name, []).append(writes)
                self.settle(name, wrote=True)
                if name == 'oaio':
                    self.results.facts['mount peak RSS, write'] = \
                        f'{status_kib(self.alice.pid, "VmHWM") / 1024:.0f} MiB (write, fsync, hash and upload)'
                path.unlink(missing_ok=True)
                self.settle(name, wrote=True)
        stats = self.stats_of(runs, 'MB/s', True)
        for name, why in failures.items():
            stats[name].note = why
        ours = stats['oaio']
        for peer in ('passthroughfs', 'rclone off', 'rclone full'):
            text, value = ratio_text(ours, stats.get(peer, Stats([], '')), peer)
            self.add('2', f'sequential write {cfg.write_mib} MiB + fsync (MB/s)', stats, text,
                     f'≥ 1× {peer.split()[0]}' + (' mount' if peer.startswith('rclone') else ''),
                     None if value is None else value >= 1)
        stats = self.stats_of(writes_only, 'MB/s', True)
        text, _ = ratio_text(stats['oaio'], stats.get('passthroughfs', Stats([], '')), 'passthroughfs')
        self.add('2', '… the same, until the last write returned, before fsync (MB/s)', stats, text, '–', None)

    # 3. metadata ---------------------------------------------------------------------------------

    def bench_metadata(self) -> None:
        cfg = self.config
        n = cfg.meta_files
        log(f'3: metadata in one directory of {n} files')
        names = [f'file-{index:05d}.txt' for index in range(n)]
        kinds = ('create all', 'ls -l cold', 'ls -l warm', 'stat all')
        runs: dict[str, dict[str, list]] = {kind: {} for kind in kinds}
        # the folders are deleted at the end, not after each run: ext4 without a journal (as here)
        # skips inodes freed in the last 30 s when it allocates one, scanning them on every create
        # (perf: 60 % of a create after a 2,000-file rmtree), so a deletion would slow the next
        # contestant's creates
        made: list[Path] = []
        for rep in range(cfg.reps_meta):
            for name in self.systems_of_run(rep):
                if name == 'oaio':
                    folder = self.alice.path / f'meta-{rep}'           # a new object directory
                else:
                    folder = self.systems.roots[name] / f'meta-{name.replace(" ", "-")}-{rep}'
                folder.mkdir()
                self.settle(name)
                wait_disk_quiet(self.base)
                started = time.perf_counter()
                for file_name in names:
                    os.close(os.open(f'{folder}/{file_name}', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                runs['create all'].setdefault(name, []).append((time.perf_counter() - started) * 1000)
                self.settle(name, wrote=True)
                self.results.cold = drop_caches() and self.results.cold
                wait_disk_quiet(self.base)
                listed = n + 1 if name == 'oaio' else n             # an object directory holds values.json too
                runs['ls -l cold'].setdefault(name, []).append(timed_ls(folder, listed))
                runs['ls -l warm'].setdefault(name, []).append(timed_ls(folder, listed))
                drop_caches()
                wait_disk_quiet(self.base)
                started = time.perf_counter()
                for file_name in names:
                    os.stat(f'{folder}/{file_name}')
                runs['stat all'].setdefault(name, []).append((time.perf_counter() - started) * 1000)
                made.append(folder)
        for folder in made:
            shutil.rmtree(folder)
        for name in self.systems_in_order():
            self.settle(name, wrote=True)
        for kind in kinds:
            stats = self.stats_of(runs[kind], 'ms', False)
            ours = stats['oaio']
            pt_text, pt_value = ratio_text(ours, stats.get('passthroughfs', Stats([], '')), 'passthroughfs')
            rc = [ratio_text(ours, stats.get(peer, Stats([], '')), peer) for peer in ('rclone off', 'rclone full')]
            values = [pt_value] + [value for _, value in rc]
            met = None if None in values else pt_value >= 2 and min(value for _, value in rc) > 1
            self.add('3', f'{kind}, {n} files in one directory (ms)', stats,
                     ', '.join([pt_text] + [text for text, _ in rc]), '≥ 2× passthroughfs, > 1× rclone', met)

    # 4. propagation ------------------------------------------------------------------------------

    def bench_propagation(self) -> None:
        cfg = self.config
        log(f'4: propagation between two mounts, {cfg.edits} edits')
        mount_a = OaioMount(self.processes, self.server, self.base, 'bob', 'desk').start()
        mount_b = OaioMount(self.processes, self.server, self.base, 'bob', 'couch').start()
        try:
            (mount_a.path / 'shared').mkdir()
            width = 64
            text = lambda index: f'edit {index:06d} '.ljust(width - 1, '.').encode() + b'\n'      # noqa: E731
            (mount_a.path / 'shared' / 'note.txt').write_bytes(text(0))
            target = mount_b.path / 'shared' / 'note.txt'
            wait_content(target, text(0), 60)
            mount_a.wait_idle()
            mount_b.wait_idle()
            delays = []
            for index in range(1, cfg.edits + 1):
                with open(mount_a.path / 'shared' / 'note.txt', 'wb') as note:      # same size every time
                    note.write(text(index))
                closed = time.perf_counter()
                seen = wait_content(target, text(index), 15)
                delays.append(seen - closed if seen is not None else None)
                time.sleep(0.25)
            problems = mount_a.log_problems() + mount_b.log_problems()
            if problems:
                self.results.notes.append('4: the mounts logged errors: ' + '; '.join(problems[:3]))
        finally:
            for mounted in (mount_b, mount_a):
                mounted.stop()
        missed = sum(delay is None for delay in delays)
        seen = sorted(delay for delay in delays if delay is not None)
        p50 = percentile(seen, 50) if seen else None
        p95 = percentile(seen + [float('inf')] * missed, 95) if seen else None
        note = f'{len(delays)} edits' + (f', {missed} not seen within 15 s' if missed else '')
        peer_text = 'peers poll every 30–60 s'
        self.add('4', f'propagation A → B, p50 (s; {note})', {'oaio': Stats([p50], 's', False)}, peer_text,
                 'p50 ≤ 0.5 s', None if p50 is None else p50 <= 0.5)
        self.add('4', f'propagation A → B, p95 (s; {note})', {'oaio': Stats([p95], 's', False)}, peer_text,
                 'p95 ≤ 1 s', None if p95 is None else p95 <= 1.0)
        self.results.facts['propagation delays'] = \
            f'min {min(seen):.3f} s, max {max(seen):.3f} s over {len(seen)} edits' if seen else 'none seen'

    # 5 + 6. sync scaling and a fresh device's initial sync -------------------------------------

    def register_objects(self, user: str, count: int) -> dict[str, str]:
        """Register ``count`` small objects (values only) for ``user``; returns oaio_id → stamp."""
        from oaio.client import protocol as p
        local = threading.local()
        stamps: dict[str, str] = {}
        errors: list[str] = []

        def register(index: int) -> None:
            if not hasattr(local, 'session'):
                local.session = Session(self.server, user, device='seeder')
            oaio_id = f'bench-{user}-{index:05d}'
            stamp = p.now_stamp()
            answer = local.session.post('register/', json={
                'oaio_id': oaio_id, 'client_stamp': stamp, 'server_stamp': '',
                'client_values': {'_name': f'object {index}', 'index': index,
                                  'note': 'a small object of the sync benchmark'}})
            if answer.ok:
                stamps[oaio_id] = answer.json()['client_stamp']
            else:
                errors.append(f'{answer.status_code} {answer.text[:200]}')
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(register, range(count)))
        if errors:
            raise RuntimeError(f'registering {count} objects failed {len(errors)} times, e.g. {errors[0]}')
        return stamps

    def client(self, user: str, root: Path, device: str = 'fresh'):
        from oaio.client import OaioClient
        return OaioClient(self.server.host, {'username': user, 'password': PASSWORD}, app_id='bench',
                          device_id=device, client_root=str(root), auto_sync=False)

    def initial_sync(self, user: str, tag: str) -> tuple[float, object]:
        """Seconds a fresh client needs for its first sync of ``user``'s objects (and the client, open)."""
        root = self.base / f'client-{user}-{tag}'
        client = self.client(user, root)
        started = time.perf_counter()
        ok = client.synchronize_with_server_if_online()
        seconds = time.perf_counter() - started
        if not ok:
            client.close()
            raise RuntimeError(f'initial sync of {user} failed: {client.error_message}')
        return seconds, client

    def bench_sync_scaling(self) -> None:
        cfg = self.config
        for n in cfg.scaling_n:
            user = self.server.adduser(f'n{n}')
            log(f'5: sync scaling, N = {n}: registering')
            started = time.perf_counter()
            stamps = self.register_objects(user, n)
            self.results.facts[f'registering {n} objects'] = f'{time.perf_counter() - started:.1f} s (4 threads)'
            client = None
            if n == cfg.small_objects and self.wanted('6'):
                log(f'6: initial sync of {n} small objects')
                rates = []
                for rep in range(cfg.reps_initial):
                    if client is not None:
                        client.close()
                        shutil.rmtree(client.client_root, ignore_errors=True)
                    seconds, client = self.initial_sync(user, f'initial-{rep}')
                    rates.append(n / seconds)
                stats = {'oaio': Stats(rates, 'objects/s', True)}
                self.add('6', f'initial sync of {n} small objects (objects/s)', stats, '–', '≥ 500 objects/s',
                         stats['oaio'].median >= 500)
            else:
                _, client = self.initial_sync(user, 'scaling')
            self.measure_rounds(user, n, stamps, client)
            client.close()
            shutil.rmtree(client.client_root, ignore_errors=True)
        self.report_scaling()

    def measure_rounds(self, user: str, n: int, stamps: dict, client) -> None:
        from oaio.client import protocol as p
        log(f'5: sync scaling, N = {n}: measuring')
        changer = Session(self.server, user, device='changer')
        raw = Session(self.server, user, device='raw')
        counted = {'requests': 0, 'bytes': 0}

        def count(response, *args, **kwargs):
            counted['requests'] += 1
            if kwargs.get('stream'):
                counted['bytes'] += int(response.headers.get('Content-Length', 0))
            else:
                counted['bytes'] += wire_bytes(response)
        client._api.session.hooks['response'].append(count)
        cursor = client._engine.state['cursor']
        rounds = {'feed': [], 'listing': [], 'client': []}
        ids = sorted(stamps)
        for rep in range(self.config.reps_sync):
            oaio_id = ids[(rep * 7919) % len(ids)]
            new = p.now_stamp()
            answer = changer.post('upload/', json={'oaio_id': oaio_id, 'client_stamp': new,
                                                   'server_stamp': stamps[oaio_id],
                                                   'client_values': {'_name': f'changed {rep}', 'rep': rep}})
            answer.raise_for_status()
            stamps[oaio_id] = answer.json()['client_stamp']
            # the original protocol's round: clock check and the full listing
            started = time.perf_counter()
            answers = [raw.get('current_stamp/'), raw.get('oaio_stampz/')]
            seconds = time.perf_counter() - started
            for response in answers:
                response.raise_for_status()
            listed = len(answers[1].json())
            rounds['listing'].append({'requests': 2, 'bytes': sum(map(wire_bytes, answers)), 'seconds': seconds,
                                      'objects': listed})
            # our change feed: one request since the cursor
            started = time.perf_counter()
            response = raw.get('changes/', params={'since': cursor})
            seconds = time.perf_counter() - started
            response.raise_for_status()
            feed = response.json()
            rounds['feed'].append({'requests': 1, 'bytes': wire_bytes(response), 'seconds': seconds,
                                   'objects': len(feed['changes'])})
            # our client's whole round: clock check, feed, apply the change, push nothing
            counted.update(requests=0, bytes=0)
            started = time.perf_counter()
            ok = client.synchronize_with_server_if_online()
            seconds = time.perf_counter() - started
            if not ok:
                raise RuntimeError(f'sync round failed: {client.error_message}')
            rounds['client'].append({'requests': counted['requests'], 'bytes': counted['bytes'], 'seconds': seconds})
            cursor = client._engine.state['cursor']
            if client.object(oaio_id).client_values.get('rep') != rep:
                raise RuntimeError(f'the client did not pull the change of {oaio_id}')
        entry = {'n': n}
        for kind, measured in rounds.items():
            entry[kind] = {key: statistics.median(round_[key] for round_ in measured) for key in measured[0]}
            entry[kind]['seconds_all'] = [round_['seconds'] for round_ in measured]
        self.results.scaling.append(entry)

    def report_scaling(self) -> None:
        """Rows of benchmark 5: one round of our client vs one round of the original protocol."""
        rows = self.results.scaling
        if not rows:
            return
        first, last = rows[0], rows[-1]
        n = last['n']
        ours, theirs = last['client'], last['listing']
        factor = theirs['bytes'] / ours['bytes']
        self.add('5', f'one sync round at N = {n:,}, one object changed (bytes: our client\'s round vs '
                 f'current_stamp + oaio_stampz)', {'oaio': Stats([ours['bytes']], 'B', False),
                                                   'original protocol': Stats([theirs['bytes']], 'B', False)},
                 f'{factor:,.0f}× fewer bytes', '≥ 100× fewer bytes at N = 10,000',
                 factor >= 100 if n >= 10000 else None)
        times = {'oaio': Stats(ours['seconds_all'], 's', False),
                 'original protocol': Stats(theirs['seconds_all'], 's', False)}
        text, _ = ratio_text(times['oaio'], times['original protocol'], 'full listing')
        self.add('5', f'one sync round at N = {n:,} (s; the original\'s client-side work not counted)', times, text,
                 '–', None)
        growth_bytes = ours['bytes'] / first['client']['bytes']
        growth_time = ours['seconds'] / first['client']['seconds']
        flat = ours['requests'] == first['client']['requests'] and growth_bytes <= 1.5 and growth_time <= 2
        self.add('5', f'our client\'s round from N = {first["n"]:,} to {n:,}: requests '
                 f'{first["client"]["requests"]:.0f} → {ours["requests"]:.0f} (s at N = {n:,})',
                 {'oaio': Stats(ours['seconds_all'], 's', False)},
                 f'bytes ×{growth_bytes:.2f}, time ×{growth_time:.2f}',
                 'flat in N (same requests, bytes ≤ 1.5×, time ≤ 2×)', flat)

    def bench_bulk_initial_sync(self) -> None:
        cfg = self.config
        per_file = cfg.bulk_mib * MiB // cfg.bulk_files
        size = per_file * cfg.bulk_files
        label = f'{cfg.bulk_mib} MiB' if cfg.bulk_mib < 1024 else f'{cfg.bulk_mib // 1024} GiB'
        log(f'6: initial sync of {label} in {cfg.bulk_files} files')
        folder = self.source / 'bulk'
        folder.mkdir()
        for index in range(cfg.bulk_files):
            (folder / f'part-{index:04d}.bin').write_bytes(os.urandom(per_file))
        seeder = self.client('bulk', self.base / 'client-bulk-seed', device='seeder')
        try:
            started = time.perf_counter()
            seeder.register_folder(str(folder))
            if not seeder.synchronize_with_server_if_online():
                raise RuntimeError(f'seeding failed: {seeder.error_message}')
            seconds = time.perf_counter() - started
            self.results.facts[f'upload of {label} in {cfg.bulk_files} files (one client)'] = \
                f'{size / seconds / 1e6:.0f} MB/s'
        finally:
            seeder.close()
        rates = []
        for rep in range(cfg.reps_initial):
            drop_caches()
            seconds, client = self.initial_sync('bulk', f'bulk-{rep}')
            got = sum(entry.stat().st_size for entry in Path(client.files_root(next(iter(client.client_objectz))))
                      .rglob('*') if entry.is_file())
            client.close()
            shutil.rmtree(client.client_root, ignore_errors=True)
            if got != size:
                raise RuntimeError(f'the fresh client got {got} bytes instead of {size}')
            rates.append(size / seconds / 1e6)
        stats = {'oaio': Stats(rates, 'MB/s', True)}
        self.add('6', f'initial sync of {label} in {cfg.bulk_files} files (MB/s)', stats, '–', '≥ 200 MB/s',
                 stats['oaio'].median >= 200)
        shutil.rmtree(folder)

    # 7. the server -------------------------------------------------------------------------------

    def bench_server(self) -> None:
        cfg = self.config
        log(f'7: {cfg.waiters} idle long-poll waiters')
        session = Session(self.server, 'idle')
        cursor = session.get('changes/').json()['cursor']
        quiesce([self.server.pid], timeout=60)
        rss_before = status_kib(self.server.pid, 'VmRSS') / 1024
        held = asyncio.run(hold_waiters(self.server.port, session.session_id, cursor, cfg.waiters,
                                        cfg.idle_window, self.server.pid))
        self.results.facts['server RSS before the waiters'] = f'{rss_before:.0f} MiB'
        rss = {'oaio': Stats([held['rss_mib']], 'MiB', False)}
        note = f'{held["waiting"]} of {cfg.waiters} waiting'
        self.add('7', f'{cfg.waiters} idle long-poll waiters: server RSS (MiB; {note})', rss, '–', '< 300 MB',
                 held['rss_mib'] * 1.048576 < 300 and held['waiting'] == cfg.waiters)
        cpu = {'oaio': Stats([held['cpu_percent']], '%', False)}
        self.add('7', f'{cfg.waiters} idle long-poll waiters: server CPU (% of one core over '
                 f'{cfg.idle_window:.0f} s)', cpu, '–', '< 5 %', held['cpu_percent'] < 5)
        log(f'7: {cfg.uploaders} clients uploading concurrently')
        outcome = self.concurrent_uploads()
        errors = {'oaio': Stats([outcome['errors']], 'errors', False)}
        self.add('7', f'{cfg.uploaders} clients uploading at once, {cfg.uploads_each} versions each '
                 f'(errors; {outcome["versions_per_second"]:.0f} versions/s)', errors, '–', 'no errors',
                 outcome['errors'] == 0)
        if outcome['messages']:
            self.results.notes.append('7: upload errors: ' + '; '.join(outcome['messages'][:3]))

    def concurrent_uploads(self) -> dict:
        cfg = self.config
        clients = [self.client('load', self.base / f'client-load-{index}', device=f'uploader-{index}')
                   for index in range(cfg.uploaders)]
        barrier = threading.Barrier(len(clients))
        messages: list[str] = []
        counts = {'errors': 0, 'syncs': 0}
        lock = threading.Lock()

        def upload(index_client) -> None:
            index, client = index_client
            barrier.wait()
            oaio_id = None
            for _ in range(cfg.uploads_each):
                content = os.urandom(256 * 1024)
                try:
                    if oaio_id is None:
                        oaio_id = client.register_file(f'data-{index}.bin', file_content=content).oaio_id
                    else:
                        client.update_file(oaio_id, file_content=content)
                    ok = client.synchronize_with_server_if_online()
                    message = client.error_message
                except Exception as exc:            # count it: the run goes on
                    ok, message = False, repr(exc)
                with lock:
                    counts['syncs'] += 1
                    if not ok:
                        counts['errors'] += 1
                        messages.append(message)
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(len(clients)) as pool:
                list(pool.map(upload, enumerate(clients)))
        finally:
            for client in clients:
                client.close()
                shutil.rmtree(client.client_root, ignore_errors=True)
        seconds = time.perf_counter() - started
        return {'errors': counts['errors'], 'messages': messages,
                'versions_per_second': cfg.uploaders * cfg.uploads_each / seconds}

    # 8. a one-file edit in a small and in a big object ------------------------------------------

    def bench_edit_scaling(self) -> None:
        """One file of an object rewritten on the mount: from its close() until the server has the
        version, and the bytes the mount sent meanwhile, for an object of 10 and of 10,000 files."""
        sizes = (10, 1000) if self.config.quick else (10, 10000)
        reps = 3 if self.config.quick else 5
        user = self.server.adduser('editor')
        proxy = CountingProxy(self.server)
        mount = OaioMount(self.processes, proxy, self.base, user, 'editing').start()
        watcher = Session(self.server, user, device='watcher')
        results = {n: {'seconds': [], 'bytes': []} for n in sizes}
        try:
            for n in sizes:
                log(f'8: an object of {n} files')
                folder = mount.path / f'files-{n}'
                folder.mkdir()
                for index in range(n):
                    (folder / f'file-{index:05d}.txt').write_bytes(b'the same small file\n')
                mount.wait_idle()
            ids = {n: self._object_id(watcher, f'files-{n}') for n in sizes}
            for rep in range(reps):
                for n in (sizes if rep % 2 == 0 else sizes[::-1]):
                    seconds, sent = self._timed_edit(mount, proxy, watcher, ids[n], mount.path / f'files-{n}', rep)
                    results[n]['seconds'].append(seconds)
                    results[n]['bytes'].append(sent)
                    mount.wait_idle()
            problems = mount.log_problems()
            if problems:
                self.results.notes.append('8: the mount logged errors: ' + '; '.join(problems[:3]))
        finally:
            mount.stop()
            proxy.close()
        small, big = sizes
        for key, unit, name in (('seconds', 's', 'close() → version on the server (s)'),
                                ('bytes', 'bytes', 'bytes sent by the mount')):
            ours = {n: Stats(results[n][key], unit, False) for n in sizes}
            factor = (ours[big].median / ours[small].median) if ours[small].median and ours[big].median else None
            ratio = f'{big:,} files: {ours[big].text()}; {factor:.2f}× the {small}-file figure' if factor \
                else f'{big:,} files: {ours[big].text()}'
            self.add('8', f'one-file edit, object of {small} vs {big:,} files: {name}', {'oaio': ours[small]},
                     ratio, f'≤ 2× the {small}-file figure', None if factor is None else factor <= 2)

    @staticmethod
    def _object_id(session: Session, name: str) -> str:
        objects = session.get('oaio_stampz/').json()
        return next(obj['oaio_id'] for obj in objects if obj['client_values'].get('_name') == name)

    @staticmethod
    def _timed_edit(mount: OaioMount, proxy: CountingProxy, session: Session, oaio_id: str, folder: Path,
                    rep: int) -> tuple[float | None, int | None]:
        """Seconds from close() until the change feed (long-polled by another device of the user, so
        the server is not kept busy listing the object) shows the new version, and the bytes the
        mount sent meanwhile."""
        cursor = session.get('changes/').json()['cursor']
        sent_before = proxy.sent
        with open(folder / 'file-00003.txt', 'wb') as edited:
            edited.write(f'edit {rep}\n'.encode())
        closed = time.perf_counter()
        while time.perf_counter() < closed + 120:
            answer = session.get('changes/', params={'since': cursor, 'wait': 30}).json()
            if any((entry.get('oaio') or {}).get('oaio_id') == oaio_id for entry in answer.get('changes', [])):
                return time.perf_counter() - closed, proxy.sent - sent_before
            cursor = answer['cursor']
        return None, None

    # running -----------------------------------------------------------------------------------

    def run(self) -> Results:
        steps = [('1', self.bench_read), ('2', self.bench_write), ('3', self.bench_metadata)]
        for number, step in steps:
            if self.wanted(number):
                step()
        if self.alice is not None:
            problems = self.alice.log_problems()
            if problems:
                self.results.notes.append('the mount logged errors: ' + '; '.join(problems[:3]))
        self.stop_peers()
        if self.wanted('4'):
            self.bench_propagation()
        if self.wanted('5') or self.wanted('6'):
            self.bench_sync_scaling()
        if self.wanted('6'):
            self.bench_bulk_initial_sync()
        if self.wanted('7'):
            self.bench_server()
        if self.wanted('8'):
            self.bench_edit_scaling()
        if any(self.wanted('9' + case) for case in 'abcdefg'):
            self.bench_issue11()
        errors = self.server.errors_logged()
        if errors:
            self.results.notes.append(f'the server logged {len(errors)} error lines, e.g. {errors[0][:200]}')
        self.results.rows.sort(key=lambda row: row.number)
        return self.results


# measurements --------------------------------------------------------------------------------

def read_throughput(path: Path, expected: int) -> float | None:
    buffer = bytearray(MiB)
    total = 0
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while count := os.readv(fd, [buffer]):
            total += count
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    if total != expected:
        log(f'warning: read {total} bytes of {path}, expected {expected}')
        return None
    return total / seconds / 1e6


def write_throughput(path: Path, chunk: bytes, size: int) -> tuple[float, float]:
    """MB/s of writing ``size`` bytes, fsync and close; and MB/s of the writes alone (before fsync)."""
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(chunk)
        written = 0
        while written < size:
            part = view[:min(len(chunk), size - written)]
            while part:
                count = os.write(fd, part)
                part = part[count:]
                written += count
        writes_done = time.perf_counter()
        os.fsync(fd)
    finally:
        os.close(fd)
    return size / (time.perf_counter() - started) / 1e6, size / (writes_done - started) / 1e6


def timed_ls(folder: Path, expected: int) -> float:
    started = time.perf_counter()
    result = subprocess.run(['ls', '-l', '--color=never', str(folder)], stdout=subprocess.PIPE, check=True)
    milliseconds = (time.perf_counter() - started) * 1000
    lines = result.stdout.count(b'\n') - 1              # "total N" first
    if lines != expected:
        log(f'warning: ls -l {folder} listed {lines} entries, expected {expected}')
    return milliseconds


def wait_content(path: Path, content: bytes, timeout: float) -> float | None:
    """Poll ``path`` until it holds ``content``; the perf_counter time it did, or None."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            with open(path, 'rb') as file:
                if file.read() == content:
                    return time.perf_counter()
        except OSError:
            pass
        if time.perf_counter() > deadline:
            return None
        time.sleep(0.005)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def hold_waiters(port: int, session_id: str, cursor: str, count: int, window: float, server_pid: int) -> dict:
    """Open ``count`` long polls (wait=60) on the change feed, let them wait, measure the server."""
    request = (f'GET /api/changes/?since={cursor}&wait=60 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n'
               f'Cookie: sessionid={session_id}\r\n\r\n').encode()
    connections = []
    answered = []

    async def watch(reader) -> None:
        data = await reader.read(1)
        if data:
            answered.append(time.monotonic())
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(request)
            connections.append((reader, writer, asyncio.create_task(watch(reader))))
        await asyncio.gather(*(writer.drain() for _, writer, _ in connections))
        await asyncio.sleep(2.0)                    # every request has arrived and waits
        cpu_before = cpu_seconds(server_pid)
        await asyncio.sleep(window)
        cpu = cpu_seconds(server_pid) - cpu_before
        rss = status_kib(server_pid, 'VmRSS') / 1024
        waiting = count - len(answered)
    finally:
        for _, writer, task in connections:
            task.cancel()
            writer.close()
        await asyncio.gather(*(task for _, _, task in connections), return_exceptions=True)
    return {'rss_mib': rss, 'cpu_percent': cpu / window * 100, 'waiting': waiting}
