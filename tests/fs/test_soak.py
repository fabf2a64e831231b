"""Soak: random edits on two mounts (two devices of one user) for OAIO_SOAK_SECONDS (10 minutes by
default, as the issue asks; CI runs it once — contrib/test's SQLite pass), then both must show the
same drive, and the memory of the mounts and of the server must have stayed stable: the resident
size (VmRSS) of the last minute is below 1.5 × the first minute's + 20 MB.

Marked slow: ``pytest -m 'not slow'`` leaves it out; ``OAIO_SOAK_SECONDS=60`` tries it in a minute.
"""
from __future__ import annotations

import json
import os
import random
import time

import pytest

from oaio_testing import wait_for

SECONDS = float(os.environ.get('OAIO_SOAK_SECONDS', '600'))
WINDOW = min(60.0, SECONDS / 4)         # "the first minute" and "the last minute" of shorter runs
SAMPLE_SECONDS = 2.0


def rss_kib(pid: int) -> int:
    with open(f'/proc/{pid}/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError(f'no VmRSS for {pid}')


def drive(root) -> dict[str, bytes]:
    """Every file of the mount (values.json parsed, so formatting does not matter), conflicts included."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as file:
                data = file.read()
            found[os.path.relpath(path, root)] = json.loads(data) if name == 'values.json' else data
    return found


@pytest.mark.slow
@pytest.mark.timeout(int(SECONDS) + 600)
def test_soak_random_edits_on_two_mounts(mount, server):
    mounts = [mount('alice', 'dev1'), mount('alice', 'dev2')]
    objects = [f'Soak{number}' for number in range(4)]
    for name in objects:
        os.mkdir(mounts[0] / name)
    for m in mounts:
        # A file edited, renamed or removed while its upload is under way makes that upload fail and
        # the next sync retry it with the new state (a WARNING each time); both devices editing the
        # same objects many times a second can make every push round of a sync meet a newer version
        # on the server, which the next sync retries too. Convergence is checked below.
        m.expect_log(r'is missing|No such file or directory|does not match its declared sha256|sync incomplete'
                     r'|changed while it was uploaded'
                     r'|objects kept changing on the server while uploading')
    wait_for(lambda: all((mounts[1] / name).is_dir() for name in objects), what='the objects on dev2')

    rng = random.Random(6)
    pids = {'dev1': mounts[0].process.pid, 'dev2': mounts[1].process.pid, 'server': server.process.pid}
    samples: list[tuple[float, dict[str, int]]] = []
    started = time.monotonic()
    next_sample = started
    edits = 0
    while time.monotonic() - started < SECONDS:
        m = rng.choice(mounts)
        folder = m / rng.choice(objects)
        name = folder / f'f{rng.randrange(8)}.txt'
        action = rng.random()
        try:
            if action < 0.45:
                name.write_bytes(os.urandom(rng.randrange(1, 64 * 1024)))
            elif action < 0.65:
                with open(name, 'ab') as file:
                    file.write(b'appended line\n')
            elif action < 0.75:
                name.unlink()
            elif action < 0.85:
                name.rename(folder / f'f{rng.randrange(8)}.txt')
            else:
                values = json.loads((folder / 'values.json').read_text())
                values[f'k{rng.randrange(5)}'] = rng.randrange(10**6)
                (folder / 'values.json').write_text(json.dumps(values))
            edits += 1
        except (FileNotFoundError, FileExistsError):
            pass                            # the other device just removed or renamed it
        if time.monotonic() >= next_sample:
            samples.append((time.monotonic() - started, {key: rss_kib(pid) for key, pid in pids.items()}))
            next_sample += SAMPLE_SECONDS
        time.sleep(rng.uniform(0.01, 0.1))
    assert edits > SECONDS              # at least one edit a second got through

    def converged():
        try:
            return drive(mounts[0].path) == drive(mounts[1].path)
        except FileNotFoundError:       # a remote change landed between a listing and an open: not yet
            return False
    wait_for(converged, timeout=120, interval=1, what='both mounts showing the same drive')
    for name in objects:                # and the server holds what the mounts show
        head = mounts[0].remote.wait_object(name)
        assert set(head['client_values'].get('_file_paths', [])) == {
            os.path.relpath(os.path.join(folder, file), mounts[0] / name)
            for folder, _, files in os.walk(mounts[0] / name) for file in files if file != 'values.json'}

    first = [rss for at, rss in samples if at <= WINDOW]
    last = [rss for at, rss in samples if at >= SECONDS - WINDOW]
    assert first and last
    for key in pids:
        baseline = max(sample[key] for sample in first)
        final = max(sample[key] for sample in last)
        assert final < 1.5 * baseline + 20 * 1024, \
            f'{key}: VmRSS grew from {baseline} KiB (first {WINDOW:.0f} s) to {final} KiB (last {WINDOW:.0f} s)'
