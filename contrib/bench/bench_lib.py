"""The harness's machinery: processes it starts (server, mounts, peers) and cleans up, process
statistics from /proc, page-cache dropping, HTTP sessions, and the numbers of repeated runs.

Every process is started here, recorded with its PID and mountpoint, and ended in
:meth:`Processes.cleanup` (lazy unmount with ``fusermount3 -u -z``, then SIGTERM, then SIGKILL —
by PID, never by name).
"""
from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

PASSWORD = 'bench-password-not-secret'
CLOCK_TICKS = os.sysconf('SC_CLK_TCK')


def use_checkout(repo: Path, base: Path) -> str:
    """Make this process and every process it starts import oaio from ``repo`` — the code being
    measured — whichever checkout the installed (editable) oaio points to. Returns a description."""
    packages = base / 'pythonpath' / 'oaio'
    packages.mkdir(parents=True)
    for name, source in (('client', 'client'), ('fs', 'fs'), ('server', 'contrib/server')):
        (packages / name).symlink_to(repo / source, target_is_directory=True)
    os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [str(packages.parent), os.environ.get('PYTHONPATH')]))
    sys.path.insert(0, str(packages.parent))
    import oaio.client
    import oaio.fs
    for module in (oaio.client, oaio.fs):
        if not Path(module.__file__).resolve().is_relative_to(repo):
            raise RuntimeError(f'{module.__name__} comes from {module.__file__}, not from {repo}')
    commit = subprocess.run(['git', '-C', str(repo), 'rev-parse', '--short', 'HEAD'], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', str(repo), 'status', '--porcelain', '--untracked-files=no'],
                           capture_output=True, text=True).stdout.strip()
    return f'{commit or "?"}' + (' with uncommitted changes' if dirty else '')


def log(message: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {message}', file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# numbers ------------------------------------------------------------------------------------

@dataclass
class Stats:
    """The values of repeated runs of one measurement (None: a run that failed or timed out)."""

    values: list
    unit: str
    higher_is_better: bool = True
    note: str = ''

    @property
    def ok(self) -> list[float]:
        return [value for value in self.values if value is not None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.ok) if self.ok else None

    def text(self, digits: int | None = None) -> str:
        """``median (min–max)`` or ``median`` for a single run; ``n/a`` when nothing was measured."""
        if not self.ok:
            return f'n/a{" (" + self.note + ")" if self.note else ""}'
        fmt = lambda value: _fmt(value, digits)                       # noqa: E731
        text = fmt(self.median)
        if len(self.ok) > 1:
            text += f' ({fmt(min(self.ok))}–{fmt(max(self.ok))})'
        failed = len(self.values) - len(self.ok)
        if failed:
            text += f', {failed} failed'
        return text


def _fmt(value: float, digits: int | None = None) -> str:
    if digits is not None:
        return f'{value:.{digits}f}'
    if value == 0:
        return '0'
    magnitude = abs(value)
    if magnitude >= 100:
        return f'{value:.0f}'
    if magnitude >= 10:
        return f'{value:.1f}'
    if magnitude >= 1:
        return f'{value:.2f}'
    return f'{value:.3g}'


def speedup(ours: Stats, peer: Stats) -> float | None:
    """How many times better ours is than the peer (>1: ours is better), from the medians."""
    if ours.median is None or peer.median is None or ours.median == 0 or peer.median == 0:
        return None
    return ours.median / peer.median if ours.higher_is_better else peer.median / ours.median


# /proc ---------------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its threads (0 if it is gone)."""
    try:
        with open(f'/proc/{pid}/stat') as stat:
            fields = stat.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM); 0 if the process is gone."""
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (the peak RSS) of a process to its current RSS (Linux ≥ 4.0)."""
    try:
        with open(f'/proc/{pid}/clear_refs', 'w') as clear:
            clear.write('5')
        return True
    except OSError:
        return False


def drop_caches() -> bool:
    """Write back dirty pages, then drop the page cache, dentries and inodes (root only)."""
    os.sync()
    try:
        with open('/proc/sys/vm/drop_caches', 'w') as drop:
            drop.write('3')
        return True
    except OSError:
        return False


def quiesce(pids: list[int], busy: float = 0.05, window: float = 0.5, timeout: float = 180.0,
            check=None) -> bool:
    """Wait until the processes together use less than ``busy`` of one core for two windows in a
    row (and ``check()``, if given, is true): background uploads and syncs have ended."""
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        time.sleep(window)
        used = sum(cpu_seconds(pid) for pid in pids) - before
        calm = calm + 1 if used < busy * window and (check is None or check()) else 0
        if calm >= 2:
            return True
    log(f'warning: processes {pids} did not become idle within {timeout:.0f} s')
    return False


def disk_busy_ms(path: Path) -> int:
    """Milliseconds the block device holding ``path`` has spent doing I/O (io_ticks of its stat)."""
    device = os.stat(path).st_dev
    try:
        with open(f'/sys/dev/block/{os.major(device)}:{os.minor(device)}/stat') as stat:
            return int(stat.read().split()[9])
    except (OSError, IndexError, ValueError):
        return 0


def wait_disk_quiet(path: Path, busy: float = 0.05, window: float = 0.5, timeout: float = 20.0) -> bool:
    """``sync``, then wait until the disk holding ``path`` is busy less than ``busy`` of the time
    for two windows in a row: writeback and discards left by earlier benchmarks (gigabytes written
    and deleted) would otherwise be measured as the cost of the next metadata operations."""
    os.sync()
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        before = disk_busy_ms(path)
        time.sleep(window)
        calm = calm + 1 if disk_busy_ms(path) - before < busy * window * 1000 else 0
        if calm >= 2:
            return True
    log(f'warning: the disk of {path} did not become quiet within {timeout:.0f} s')
    return False


def warm_memory(folder: Path, size: int) -> None:
    """Write a file of ``size`` bytes into ``folder`` (on the disk under test) and delete it at once,
    without fsync (no disk I/O: delayed allocation never gives the pages blocks). The page cache the
    next measurement allocates then comes from memory this machine touched a moment ago. Why: this
    VM's balloon hands memory that stayed free for a couple of seconds back to the host (free page
    reporting), and taking it again costs a host fault per page — a native 512 MiB write took
    0.70-1.04 s of system time after a 5 s pause and 0.10-0.12 s right after writing and deleting
    1 GiB (2026-11-29). Without this, whoever waited longest before its write (oaio, while its
    upload finishes) paid for it."""
    chunk = b'\xa5' * (1 << 20)
    path = folder / '.bench-warm-memory'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for offset in range(0, size, len(chunk)):
            os.pwrite(fd, chunk, offset)
    finally:
        os.close(fd)
        os.unlink(path)


# processes -----------------------------------------------------------------------------------

@dataclass
class Started:
    name: str
    process: subprocess.Popen
    mountpoint: Path | None = None
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class Processes:
    """Everything the harness started; :meth:`cleanup` ends all of it."""

    def __init__(self):
        self.started: list[Started] = []

    def start(self, name: str, argv: list[str], log_path: Path, mountpoint: Path | None = None,
              env: dict | None = None) -> Started:
        with open(log_path, 'ab') as output:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       env=env)
        started = Started(name, process, mountpoint, log_path)
        self.started.append(started)
        return started

    def wait_mounted(self, started: Started, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not os.path.ismount(started.mountpoint):
            if started.process.poll() is not None:
                raise RuntimeError(f'{started.name} exited with {started.process.returncode} before mounting:\n'
                                   + tail(started.log_path))
            if time.monotonic() > deadline:
                raise RuntimeError(f'{started.name} did not mount within {timeout:.0f} s:\n' + tail(started.log_path))
            time.sleep(0.05)

    def stop(self, started: Started, grace: float = 60.0) -> int | None:
        """Unmount (if a mount) and end the process: SIGTERM (for non-mounts), then SIGKILL."""
        if started.mountpoint is not None and os.path.ismount(started.mountpoint):
            lazy = started.process.poll() is not None
            subprocess.run(['fusermount3', '-u', *(['-z'] if lazy else []), str(started.mountpoint)],
                           capture_output=True, timeout=60)
            if os.path.ismount(started.mountpoint):
                subprocess.run(['fusermount3', '-u', '-z', str(started.mountpoint)], capture_output=True, timeout=60)
        elif started.process.poll() is None:
            started.process.send_signal(signal.SIGTERM)
        try:
            code = started.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            started.process.send_signal(signal.SIGTERM)
            try:
                code = started.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                started.process.kill()
                code = started.process.wait()
        if started in self.started:
            self.started.remove(started)
        return code

    def cleanup(self) -> None:
        """Unmount every mount lazily, then end every process (newest first), by PID."""
        for started in reversed(self.started):
            if started.mountpoint is not None:
                subprocess.run(['fusermount3', '-u', '-z', str(started.mountpoint)], capture_output=True, timeout=60)
        for started in reversed(list(self.started)):
            try:
                self.stop(started, grace=20)
            except Exception as exc:              # go on: the others must end too
                log(f'cleanup of {started.name} (pid {started.pid}) failed: {exc!r}')


def tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ''
    return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])


# the oaio server -----------------------------------------------------------------------------

class Server:
    """``oaio-server serve`` on a free loopback port with a temporary data directory."""

    def __init__(self, processes: Processes, base: Path):
        self.processes, self.data = processes, base / 'server-data'
        self.port = free_port()
        self.env = dict(os.environ, OAIO_PASSWORD_HASHER='fast', OAIO_LOG_LEVEL='WARNING')
        self.started: Started | None = None
        self.log_path = base / 'server.log'

    @property
    def host(self) -> str:
        return f'127.0.0.1:{self.port}'

    @property
    def url(self) -> str:
        return f'http://{self.host}/api/'

    @property
    def pid(self) -> int:
        return self.started.pid

    def start(self) -> None:
        self.started = self.processes.start(
            'oaio-server', [sys.executable, '-m', 'oaio.server.cli', 'serve', '--data', str(self.data),
                            '--bind', self.host, '--no-access-log'], self.log_path, env=self.env)
        deadline = time.monotonic() + 90
        while True:
            if self.started.process.poll() is not None:
                raise RuntimeError('oaio-server exited:\n' + tail(self.log_path))
            try:
                if requests.get(self.url + 'current_stamp/', timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError('oaio-server did not answer within 90 s:\n' + tail(self.log_path))
            time.sleep(0.1)

    def adduser(self, name: str) -> str:
        result = subprocess.run([sys.executable, '-m', 'oaio.server.cli', 'adduser', name, '--data', str(self.data),
                                 '--password-stdin'], input=PASSWORD + '\n', capture_output=True, text=True,
                                env=self.env, timeout=120)
        if result.returncode:
            raise RuntimeError(f'adduser {name} failed: {result.stderr}')
        return name

    def errors_logged(self) -> list[str]:
        text = self.log_path.read_text(errors='replace') if self.log_path.exists() else ''
        return [line for line in text.splitlines() if ' ERROR ' in line or 'Traceback' in line]


class Session:
    """A logged-in HTTP session speaking the wire protocol (CSRF included), counting its traffic."""

    def __init__(self, server: Server, user: str, device: str = 'bench'):
        self.server, self.user = server, user
        self.http = requests.Session()
        self.http.headers.update({'X-OAIO-user': repr(user.encode()), 'X-OAIO-dvc': repr(device.encode()),
                                  'X-OAIO-app': repr(b'bench')})
        self.http.get(server.url + 'login/', timeout=30)
        answer = self.post('login/', json={'username': user, 'password': PASSWORD})
        answer.raise_for_status()

    def get(self, slug: str, **kwargs) -> requests.Response:
        return self.http.get(self.server.url + slug, timeout=kwargs.pop('timeout', 120), **kwargs)

    def post(self, slug: str, **kwargs) -> requests.Response:
        headers = {'X-CSRFToken': self.http.cookies.get('csrftoken', ''), 'Referer': self.server.url + slug}
        return self.http.post(self.server.url + slug, headers=headers, timeout=kwargs.pop('timeout', 120), **kwargs)

    @property
    def session_id(self) -> str:
        return self.http.cookies.get('sessionid', '')


def wire_bytes(response: requests.Response) -> int:
    """Bytes of one HTTP/1.1 exchange as sent: request line, headers and body, and the answer's."""
    request = response.request
    size = len(f'{request.method} {request.path_url} HTTP/1.1\r\n') + 2
    size += sum(len(name) + len(value) + 4 for name, value in request.headers.items())
    body = request.body
    size += len(body) if isinstance(body, (bytes, str)) else 0
    size += len(f'HTTP/1.1 {response.status_code} {response.reason}\r\n') + 2
    size += sum(len(name) + len(value) + 4 for name, value in response.raw.headers.items()) \
        if response.raw is not None and hasattr(response.raw, 'headers') else 0
    size += len(response.content)
    return size


class CountingProxy:
    """A loopback TCP relay in front of the server that counts the bytes a client sends through it
    (``sent``) and receives (``received``): what one mount costs on the wire, its long poll included.
    Stands in for the :class:`Server` of an :class:`OaioMount` (``host``, ``pid``)."""

    def __init__(self, server: Server):
        self.server = server
        self.sent = self.received = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(('127.0.0.1', 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f'127.0.0.1:{self.port}'

    @property
    def pid(self) -> int:
        return self.server.pid

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(('127.0.0.1', self.server.port))
            threading.Thread(target=self._relay, args=(client, upstream, 'sent'), daemon=True).start()
            threading.Thread(target=self._relay, args=(upstream, client, 'received'), daemon=True).start()

    def _relay(self, source, target, counter: str) -> None:
        try:
            while data := source.recv(1 << 16):
                with self._lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


# mounts --------------------------------------------------------------------------------------

class OaioMount:
    """``oaio mount --foreground`` of one user and device on a temporary mountpoint."""

    def __init__(self, processes: Processes, server: Server, base: Path, user: str, device: str):
        self.processes, self.server, self.user, self.device = processes, server, user, device
        self.path = base / f'mnt-oaio-{user}-{device}'
        self.cache = base / f'cache-oaio-{user}-{device}'
        self.password_file = base / f'password-{user}-{device}'
        self.started: Started | None = None
        self.path.mkdir(parents=True)
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as password:
            password.write(PASSWORD + '\n')

    @property
    def pid(self) -> int:
        return self.started.pid

    def start(self) -> OaioMount:
        self.started = self.processes.start(
            f'oaio mount {self.user}@{self.device}',
            [sys.executable, '-m', 'oaio.fs.cli', 'mount', self.server.host, str(self.path), '--user', self.user,
             '--password-file', str(self.password_file), '--cache', str(self.cache), '--device', self.device,
             '--foreground'], self.path.parent / f'mount-{self.user}-{self.device}.out', mountpoint=self.path)
        self.processes.wait_mounted(self.started)
        return self

    def stop(self) -> int | None:
        return self.processes.stop(self.started) if self.started else None

    def status(self) -> dict:
        import json
        try:
            return json.loads(os.getxattr(self.path, 'user.oaio.status'))
        except OSError:
            return {}

    def synced(self) -> bool:
        status = self.status()
        return bool(status) and status.get('pending') == 0 and status.get('online', False)

    def wait_idle(self, timeout: float = 300.0) -> bool:
        """Until every change is uploaded and the mount and the server are idle."""
        time.sleep(0.3)         # past the flusher's debounce
        return quiesce([self.pid, self.server.pid], check=self.synced, timeout=timeout)

    def log_problems(self) -> list[str]:
        log_file = self.cache / 'oaio.log'
        text = log_file.read_text(errors='replace') if log_file.exists() else ''
        return [line for line in text.splitlines() if ' ERROR ' in line or 'Traceback' in line]


class PeerMount:
    """A peer filesystem over ``source``: pyfuse3's passthroughfs example or an rclone mount."""

    def __init__(self, processes: Processes, name: str, argv_for, source: Path, base: Path):
        self.processes, self.name, self.source = processes, name, source
        self.path = base / f'mnt-{name.replace(" ", "-")}'
        self.path.mkdir(parents=True)
        self.started = processes.start(name, argv_for(source, self.path), base / f'{name.replace(" ", "-")}.out',
                                       mountpoint=self.path)
        processes.wait_mounted(self.started)

    @property
    def pid(self) -> int:
        return self.started.pid

    def wait_idle(self, timeout: float = 120.0) -> bool:
        return quiesce([self.pid], timeout=timeout)


def fetch_passthroughfs(base: Path) -> tuple[Path | None, str]:
    """pyfuse3's examples/passthroughfs.py from the sdist of the installed pyfuse3 version (pip
    download into ``base``); (path, '') or (None, why not)."""
    from importlib.metadata import version
    try:
        # the release's own sdist, also under contrib/pyfuse3/build's local version (3.5.0+oaio.1),
        # which only adds two flags passthroughfs does not use
        wanted = version('pyfuse3').split('+')[0]
    except Exception as exc:
        return None, f'pyfuse3 not installed: {exc}'
    target = base / 'pyfuse3-sdist'
    target.mkdir()
    # --no-binary pyfuse3 (not :all:): the same sdist, without building pyfuse3's build tools from
    # source only to prepare its metadata (minutes instead of seconds)
    result = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', 'pyfuse3',
                             '--disable-pip-version-check', '-q', '-d', str(target), f'pyfuse3=={wanted}'],
                            capture_output=True, text=True, timeout=600)
    archives = list(target.glob('pyfuse3-*.tar.gz'))
    if result.returncode or not archives:
        return None, f'pip download pyfuse3=={wanted} failed: {result.stderr.strip()[-300:]}'
    with tarfile.open(archives[0]) as archive:
        member = next((m for m in archive.getmembers() if m.name.endswith('/examples/passthroughfs.py')), None)
        if member is None:
            return None, 'the sdist has no examples/passthroughfs.py'
        script = target / 'passthroughfs.py'
        script.write_bytes(archive.extractfile(member).read())
    return script, f'pyfuse3 {wanted} sdist'


def rclone_argv(base: Path, mode: str):
    """argv factory of ``rclone mount SOURCE MNT --vfs-cache-mode MODE`` with a private config and cache."""
    config = base / 'rclone.conf'
    config.touch()

    def argv(source: Path, mountpoint: Path) -> list[str]:
        return ['rclone', 'mount', str(source), str(mountpoint), '--vfs-cache-mode', mode, '--config', str(config),
                '--cache-dir', str(base / f'rclone-cache-{mode}'), '--log-level', 'NOTICE']
    return argv


@dataclass
class Systems:
    """Where each contestant's data lives: name → root directory (peers mirror ``native``)."""

    roots: dict[str, Path] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)        # peer → why it is not measured


# Syncthing: the peer of the sync benchmarks (issue 11) --------------------------------------

SYNCTHING_FOLDER = 'bench'


class Syncthing:
    """One ``syncthing serve`` with a home of its own (config, keys, database) under the harness's
    temporary directory: GUI/REST and sync protocol on free loopback ports, no global or local
    discovery, no relays, no NAT traversal, no usage reports, no upgrades, no restart monitor (one
    process, ended by PID). Driven through its REST API with the API key written into its config."""

    def __init__(self, processes: Processes, base: Path, name: str):
        self.processes, self.name = processes, name
        self.home = base / f'syncthing-{name}'
        self.folder = base / f'syncthing-{name}-folder'
        self.gui_port, self.sync_port = free_port(), free_port()
        self.api_key = f'bench-{name}-{os.urandom(8).hex()}'
        self.started: Started | None = None
        self.env = dict(os.environ, STNOUPGRADE='1', STNORESTART='1', STNODEFAULTFOLDER='1',
                        HOME=str(self.home))
        subprocess.run(['syncthing', 'generate', f'--home={self.home}', '--no-default-folder', '--skip-port-probing'],
                       check=True, capture_output=True, env=self.env, timeout=120)
        self._configure()
        self.device_id = subprocess.run(['syncthing', 'serve', f'--home={self.home}', '--device-id'], check=True,
                                        capture_output=True, text=True, env=self.env, timeout=60).stdout.strip()
        self.folder.mkdir()
        (self.folder / '.stfolder').mkdir()       # the folder marker Syncthing insists on

    def _configure(self) -> None:
        import xml.etree.ElementTree as ET
        path = self.home / 'config.xml'
        tree = ET.parse(path)
        root = tree.getroot()
        gui = root.find('gui')
        gui.set('tls', 'false')
        gui.find('address').text = f'127.0.0.1:{self.gui_port}'
        apikey = gui.find('apikey')
        if apikey is None:
            apikey = ET.SubElement(gui, 'apikey')
        apikey.text = self.api_key
        options = root.find('options')
        for child in list(options):
            if child.tag == 'listenAddress':
                options.remove(child)
        settings = {'globalAnnounceEnabled': 'false', 'localAnnounceEnabled': 'false', 'relaysEnabled': 'false',
                    'natEnabled': 'false', 'urAccepted': '-1', 'urSeen': '3', 'autoUpgradeIntervalH': '0',
                    'startBrowser': 'false', 'crashReportingEnabled': 'false', 'announceLANAddresses': 'false'}
        for key, value in settings.items():
            element = options.find(key)
            if element is None:
                element = ET.SubElement(options, key)
            element.text = value
        listen = ET.SubElement(options, 'listenAddress')
        listen.text = f'tcp://127.0.0.1:{self.sync_port}'
        tree.write(path)

    @property
    def pid(self) -> int:
        return self.started.pid

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.gui_port}/rest/'

    def start(self) -> Syncthing:
        self.started = self.processes.start(
            f'syncthing {self.name}', ['syncthing', 'serve', f'--home={self.home}', '--no-browser', '--no-restart',
                                       '--no-upgrade', f'--logfile={self.home / "syncthing.log"}'],
            self.home.parent / f'syncthing-{self.name}.out', env=self.env)
        deadline = time.monotonic() + 60
        while True:
            if self.started.process.poll() is not None:
                raise RuntimeError(f'syncthing {self.name} exited:\n' + tail(self.started.log_path)
                                   + tail(self.home / 'syncthing.log'))
            try:
                if self.get('system/ping').get('ping') == 'pong':
                    return self
            except (requests.ConnectionError, requests.HTTPError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f'syncthing {self.name} did not answer within 60 s:\n'
                                   + tail(self.home / 'syncthing.log'))
            time.sleep(0.1)

    def stop(self) -> int | None:
        return self.processes.stop(self.started, grace=30) if self.started else None

    def get(self, slug: str, **params) -> dict:
        answer = requests.get(self.url + slug, params=params, headers={'X-API-Key': self.api_key}, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def send(self, method: str, slug: str, body) -> None:
        answer = requests.request(method, self.url + slug, json=body, headers={'X-API-Key': self.api_key}, timeout=30)
        answer.raise_for_status()

    def bytes_out(self) -> int:
        """Bytes this instance has sent over its sync connections (protocol overhead included)."""
        return int(self.get('system/connections')['total']['outBytesTotal'])

    def bytes_in(self) -> int:
        return int(self.get('system/connections')['total']['inBytesTotal'])


class SyncthingPair:
    """Two Syncthing instances on this machine, introduced to each other by device ID with static
    addresses ``tcp://127.0.0.1:PORT``, sharing one folder (``a.folder`` ↔ ``b.folder``), send &
    receive on both sides, file-system watcher on with a delay of ``watch_delay`` seconds (Syncthing's
    default is 10 s), periodic rescans only hourly (the watcher does the work)."""

    def __init__(self, processes: Processes, base: Path, watch_delay: int = 1):
        self.watch_delay = watch_delay
        self.a = Syncthing(processes, base, 'A')
        self.b = Syncthing(processes, base, 'B')

    @staticmethod
    def version() -> str:
        result = subprocess.run(['syncthing', '--version'], capture_output=True, text=True, timeout=30)
        return ' '.join(result.stdout.split()[:2])

    @property
    def pids(self) -> list[int]:
        return [self.a.pid, self.b.pid]

    def start(self, timeout: float = 60.0) -> SyncthingPair:
        for one in (self.a, self.b):
            one.start()
        for one, other in ((self.a, self.b), (self.b, self.a)):
            one.send('POST', 'config/devices', {
                'deviceID': other.device_id, 'name': other.name, 'addresses': [f'tcp://127.0.0.1:{other.sync_port}'],
                'compression': 'metadata', 'autoAcceptFolders': False})
            one.send('PUT', f'config/folders/{SYNCTHING_FOLDER}', {
                'id': SYNCTHING_FOLDER, 'label': SYNCTHING_FOLDER, 'path': str(one.folder), 'type': 'sendreceive',
                'devices': [{'deviceID': one.device_id}, {'deviceID': other.device_id}],
                'fsWatcherEnabled': True, 'fsWatcherDelayS': self.watch_delay, 'rescanIntervalS': 3600,
                'ignorePerms': False})
        deadline = time.monotonic() + timeout
        while not all(one.get('system/connections')['connections'].get(other.device_id, {}).get('connected')
                      for one, other in ((self.a, self.b), (self.b, self.a))):
            if time.monotonic() > deadline:
                raise RuntimeError('the two Syncthing instances did not connect within '
                                   f'{timeout:.0f} s:\n' + tail(self.a.home / 'syncthing.log'))
            time.sleep(0.2)
        self.wait_idle()
        return self

    def stop(self) -> None:
        for one in (self.b, self.a):
            one.stop()

    def in_sync(self) -> bool:
        """Both folders scanned and idle, and each side has everything the other announced."""
        for one, other in ((self.a, self.b), (self.b, self.a)):
            status = one.get('db/status', folder=SYNCTHING_FOLDER)
            if status.get('state') != 'idle' or status.get('needTotalItems', 0):
                return False
            completion = other.get('db/completion', folder=SYNCTHING_FOLDER, device=one.device_id)
            if completion.get('completion', 0) < 100 or completion.get('needItems', 0):
                return False
        return True

    def wait_idle(self, timeout: float = 600.0) -> bool:
        """Until both are in sync and idle (CPU), e.g. after the set-up of a benchmark."""
        return quiesce(self.pids, check=self.in_sync, timeout=timeout)

    def log_problems(self) -> list[str]:
        lines = []
        for one in (self.a, self.b):
            path = one.home / 'syncthing.log'
            text = path.read_text(errors='replace') if path.exists() else ''
            lines += [f'{one.name}: {line}' for line in text.splitlines() if 'WARNING' in line or 'panic' in line]
        return lines
