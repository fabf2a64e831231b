"""The benchmark harness runs (``contrib/bench/run --quick``): it exits 0, writes the table with a
row for every benchmark and the sync-scaling plot, and leaves no mount, process or temp file
behind. The numbers are not checked — CI runs this so that the harness never rots."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / 'contrib' / 'bench' / 'run'

# (benchmark number, a phrase of its row) — every row the table must have
ROWS = [('1', 'sequential read'), ('1', 're-read'), ('2', 'sequential write'), ('3', 'create all'),
        ('3', 'ls -l cold'), ('3', 'ls -l warm'), ('3', 'stat all'), ('4', 'propagation A → B, p50'),
        ('4', 'propagation A → B, p95'), ('5', 'one sync round'), ('5', "our client's round"),
        ('6', 'small objects'), ('6', 'files (MB/s)'), ('7', 'server RSS'), ('7', 'server CPU'),
        ('7', 'clients uploading')]


def _mounts_under(path: Path) -> list[str]:
    with open('/proc/mounts') as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(str(path))]


@pytest.mark.timeout(900)
@pytest.mark.skipif(not os.path.exists('/dev/fuse') or not shutil.which('fusermount3'), reason='needs FUSE')
def test_quick_run_writes_the_table_and_the_plot(tmp_path):
    out, temp = tmp_path / 'out', tmp_path / 'temp'
    temp.mkdir()
    result = subprocess.run([sys.executable, str(RUN), '--quick', '--out', str(out)], capture_output=True, text=True,
                            env=dict(os.environ, TMPDIR=str(temp)), timeout=850)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]

    table = (out / 'benchmarks.md').read_text()
    rows = [line for line in table.splitlines() if re.match(r'\| \d \| ', line)]
    for number, phrase in ROWS:
        assert any(line.startswith(f'| {number} | ') and phrase in line for line in rows), \
            f'no row for benchmark {number} ({phrase!r}) in:\n{table}'
    header = next(line for line in table.splitlines() if line.startswith('| # |'))
    for column in ('oaio', 'native', 'passthroughfs', 'rclone off', 'rclone full', 'original protocol', 'ratio',
                   'target', 'met?'):
        assert f' {column} |' in header
    if shutil.which('rclone'):          # contrib/test installs it; passthroughfs comes with pip
        assert 'n/a (not run)' not in table, f'a peer was not measured:\n{result.stderr[-3000:]}'
    for fact in ('cores', 'kernel', 'date'):
        assert f'- {fact}: ' in table
    assert 'benchmarks-sync-scaling.png' in table
    assert (out / 'benchmarks-sync-scaling.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    assert not _mounts_under(temp), 'the harness left mounts behind'
    assert not list(temp.iterdir()), f'the harness left files behind: {list(temp.iterdir())}'
