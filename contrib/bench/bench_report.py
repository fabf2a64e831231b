"""docs/benchmarks.md (the table, the machine, the sync-scaling table) and the sync-scaling plot."""
from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

from bench_cases import COLUMNS, Results

PLOT_NAME = 'benchmarks-sync-scaling.png'
NOTES = Path(__file__).resolve().parent / 'notes.md'


def machine_facts() -> dict:
    facts = {'cores': str(os.cpu_count())}
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            model = next((line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name')), '')
        facts['cores'] += f' ({model})' if model else ''
    except OSError:
        pass
    try:
        with open('/proc/meminfo') as meminfo:
            total_kib = int(next(line for line in meminfo if line.startswith('MemTotal')).split()[1])
        facts['memory'] = f'{total_kib / 1024 / 1024:.1f} GiB'
    except (OSError, StopIteration, ValueError):
        pass
    facts['kernel'] = platform.release()
    facts['date'] = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    facts['python'] = platform.python_version()
    try:
        from importlib.metadata import version
        facts['pyfuse3'] = version('pyfuse3')
    except Exception:
        pass
    fuse = subprocess.run(['fusermount3', '-V'], capture_output=True, text=True)
    facts['fuse'] = (fuse.stdout or fuse.stderr).strip()
    return facts


def filesystem_of(path: Path) -> str:
    result = subprocess.run(['df', '-T', str(path)], capture_output=True, text=True)
    lines = result.stdout.splitlines()
    if len(lines) < 2:
        return 'unknown'
    fields = lines[1].split()
    return f'{fields[1]} on {fields[0]}'


def _cell(stats) -> str:
    return stats.text() if stats is not None else '–'


def markdown(results: Results, quick: bool, plot: str | None, command: str) -> str:
    facts = dict(results.facts)
    lines = ['# Benchmarks', '',
             f'Written by `{command}` ({"the small `--quick` version" if quick else "a full run"}). Each '
             'benchmark ran several times: a cell is the median with the range (min–max) in brackets. oaio '
             'and its peers were measured in the same run on the same machine and data, interleaved run by '
             'run; ratios are of the medians of this run (absolute numbers on a shared machine are noise, '
             'ratios much less so). The notes at the end say how to read each benchmark and what moved the '
             'numbers.', '']
    lines += ['## Machine', '']
    for key in ('cores', 'memory', 'kernel', 'date', 'code', 'python', 'pyfuse3', 'fuse', 'rclone', 'passthroughfs',
                'syncthing', 'temp files', 'page cache', 'duration'):
        if key in facts:
            lines.append(f'- {key}: {facts.pop(key)}')
    lines += ['', '## Results', '',
              '| # | benchmark | ' + ' | '.join(COLUMNS) + ' | ratio | target | met? |',
              '|---|---|' + '---|' * len(COLUMNS) + '---|---|---|']
    for row in results.rows:
        cells = [_cell(row.values.get(column)) for column in COLUMNS]
        met = {True: 'yes', False: '**no**', None: '–'}[row.met]
        lines.append(f'| {row.number} | {row.name} | ' + ' | '.join(cells) + f' | {row.ratio} | {row.target} | {met} |')
    lines += ['', 'Columns: *oaio* is the mount (1–4), the client library (5, 6) or the server (7); *native* the '
              'same files on the local disk; *passthroughfs* pyfuse3\'s example over the native directory, '
              'with an `fsync` handler added (`contrib/bench/passthroughfs_fsync.py`: the example has none, '
              'so its fsync would flush nothing); '
              '*rclone off/full* `rclone mount` of the native directory with `--vfs-cache-mode off`/`full`; '
              '*original protocol* the full listing the original client fetches every round; *Syncthing* two '
              'Syncthing instances on loopback sharing one folder (9a–9d: oaio is two mounts of one user, A and B); '
              '*rsync* `rsync -a --whole-file` to and from an rsync daemon on loopback (9e, 9g). Ratios > 1 mean '
              'oaio is better (faster, fewer bytes).', '']
    if results.scaling:
        lines += ['## Sync scaling', '',
                  'One sync round after one of N objects changed on another device. *our client*: '
                  '`synchronize_with_server_if_online()` (clock check, `changes/?since=CURSOR`, applying the '
                  'change); *change feed*: the `changes/?since=CURSOR` request alone; *original protocol*: '
                  '`current_stamp/` + `oaio_stampz/` as the original client sends every round (its client-side '
                  'comparison of N objects not counted). Bytes are HTTP/1.1 messages both ways.', '',
                  '| N | our client: requests | bytes | ms | change feed: bytes | ms | original protocol: requests '
                  '| bytes | ms |', '|---|---|---|---|---|---|---|---|---|']
        for entry in results.scaling:
            ours, feed, theirs = entry['client'], entry['feed'], entry['listing']
            lines.append(f'| {entry["n"]:,} | {ours["requests"]:.0f} | {ours["bytes"]:,.0f} | '
                         f'{ours["seconds"] * 1000:.1f} | {feed["bytes"]:,.0f} | {feed["seconds"] * 1000:.1f} | '
                         f'{theirs["requests"]:.0f} | {theirs["bytes"]:,.0f} | {theirs["seconds"] * 1000:.1f} |')
        lines.append('')
        if plot:
            lines += [f'![sync scaling: bytes and time of one round vs N]({plot})', '']
    if facts:
        lines += ['## Other measurements of this run', '']
        lines += [f'- {key}: {value}' for key, value in facts.items()]
        lines.append('')
    if results.notes:
        lines += ['## Problems seen in this run', '']
        lines += [f'- {note}' for note in results.notes]
        lines.append('')
    if NOTES.exists():
        lines += [NOTES.read_text().rstrip(), '']
    return '\n'.join(lines)


def plot_scaling(results: Results, path: Path) -> bool:
    if not results.scaling:
        return False
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ns = [entry['n'] for entry in results.scaling]
    series = [('original protocol: current_stamp + oaio_stampz', 'listing', 'tab:red', 'o'),
              ("our client's round: current_stamp + changes/?since", 'client', 'tab:blue', 's'),
              ('changes/?since request alone', 'feed', 'tab:cyan', '^')]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, key, colour, marker in series:
        left.plot(ns, [entry[key]['bytes'] for entry in results.scaling], marker=marker, color=colour, label=label)
        right.plot(ns, [entry[key]['seconds'] * 1000 for entry in results.scaling], marker=marker, color=colour,
                   label=label)
    for axes, title, unit in ((left, 'bytes per sync round', 'bytes'), (right, 'time per sync round', 'ms')):
        axes.set_xscale('log')
        axes.set_yscale('log')
        axes.set_xlabel('N subscribed objects (one changed)')
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which='both', alpha=0.3)
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
