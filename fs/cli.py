"""The ``oaio`` command: mount, umount, status, share, access, sync."""
from __future__ import annotations

import argparse
import errno
import fcntl
import getpass
import importlib.metadata
import json
import logging
import logging.handlers
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import platformdirs

from . import failures
from .failures import CliError, one_line, unreachable_reason

log = logging.getLogger('oaio')

LOG_BYTES = 10 * 1024 * 1024    # CACHE/oaio.log is rotated at this size, keeping LOG_BACKUPS old ones
LOG_BACKUPS = 3


# credentials and paths -----------------------------------------------------------------------

def read_password(password_file: str | None) -> str:
    """The password from --password-file (refused if others can read it), $OAIO_PASSWORD or a prompt."""
    if password_file:
        try:
            mode = os.stat(password_file).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise CliError(f'{password_file} can be read by others (mode {stat.S_IMODE(mode):o}); '
                               f'chmod 600 it first')
            return Path(password_file).read_text().rstrip('\n')
        except OSError as exc:
            raise CliError(f'cannot read the password file: {exc.strerror}: {password_file}') from None
    if os.environ.get('OAIO_PASSWORD'):
        return os.environ['OAIO_PASSWORD']
    if not sys.stdin.isatty():
        raise CliError('no password: use --password-file, $OAIO_PASSWORD or a terminal')
    return getpass.getpass('oaio password: ')


def default_cache(server: str, user: str) -> Path:
    """The cache of USER@SERVER in the XDG state directory (``~/.local/state/oaio/USER@SERVER``): it
    holds edits not yet uploaded, so not under ``~/.cache``, which cleaners empty. One left in the
    old place (``~/.cache/oaio/USER@SERVER``) is moved here at first use, unless a mount uses it."""
    name = re.sub(r'[^A-Za-z0-9_.@-]', '_', f'{user}@{server}')
    cache = Path(platformdirs.user_state_dir('oaio')) / name
    old = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'oaio' / name
    if cache.exists() or not old.is_dir():
        return cache
    if _in_use(old):
        return old
    cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    shutil.move(old, cache)         # a rename; a copy only if ~/.cache is another file system
    print(f'oaio: moved the cache (it holds edits not yet uploaded) from {old} to {cache}', file=sys.stderr)
    return cache


def _in_use(cache: Path) -> bool:
    """Does a client hold the store lock of ``cache`` (a mount or sync running on it)?"""
    try:
        fd = os.open(cache / '.lock', os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def setup_logging(log_file: Path | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = []
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS))
    if verbose or not log_file:
        handlers.append(logging.StreamHandler())
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers, force=True,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')


# mountpoints --------------------------------------------------------------------------------

def oaio_mounts() -> list[str]:
    """Mountpoints of oaio drives on this machine (from /proc/mounts)."""
    mounts = []
    with open('/proc/mounts') as table:
        for line in table:
            fields = line.split()
            if len(fields) > 2 and fields[2] == 'fuse.oaio':
                mounts.append(fields[1].replace('\\040', ' '))
    return mounts


def require_mount_packages() -> None:
    """The mount needs the ``fs`` extra (pyfuse3, trio); without it, say in one line what to install."""
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as exc:
        raise CliError(f"mount needs pyfuse3 and trio ({exc}): pip install 'oaio[fs]' "
                       "(with fuse3, libfuse3-dev, pkg-config and a C compiler installed)") from None


def prepare_mountpoint(mountpoint: str, allow_non_empty: bool = False) -> str:
    """Check the mountpoint; clean up a dead mount a killed process left behind. A non-empty one is
    refused unless ``allow_non_empty``: the drive would hide its files until unmounted."""
    path = os.path.abspath(mountpoint)
    try:
        os.stat(path)
        if path in oaio_mounts():               # stat may answer from the kernel's cache: ask the process
            os.getxattr(path, 'user.oaio.pid')
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:         # a dead FUSE mount: the process behind it is gone
            subprocess.run(['fusermount3', '-u', '-z', path], check=False, capture_output=True)
        elif exc.errno == errno.ENOENT:
            raise CliError(f'mountpoint does not exist: {path}') from None
        else:
            raise CliError(f'mountpoint unusable: {exc.strerror}: {path}') from None
    if os.path.ismount(path):
        raise CliError(f'mountpoint is busy (something is mounted there): {path}')
    if not os.path.isdir(path):
        raise CliError(f'mountpoint is not a directory: {path}')
    if not allow_non_empty and os.listdir(path):
        raise CliError(f'mountpoint is not empty (the drive would hide its files; --allow-non-empty mounts '
                       f'anyway): {path}')
    return path


def mount_attr(mountpoint: str, name: str) -> str:
    try:
        return os.getxattr(mountpoint, f'user.oaio.{name}').decode()
    except OSError as exc:
        raise CliError(f'{mountpoint} is not an oaio drive ({exc.strerror})', failures.NOT_FOUND) from None


def has_cache(cache: Path) -> bool:
    """Has an earlier mount or sync left objects or sync state in ``cache``? (A first mount finds none.)"""
    from oaio.client.store import LAST_SYNC_STAMP_FILE, OBJECTS_DIR, STATE_FILE
    return ((cache / STATE_FILE).exists() or (cache / LAST_SYNC_STAMP_FILE).exists()
            or any((cache / OBJECTS_DIR).glob('*.json')))


def login_error(exc: Exception, server: str, user: str, api_url: str) -> CliError:
    """The one-line error, with its exit code, for a login that failed with the client's ``exc``."""
    from oaio.client import AuthenticationError, OfflineError, ServerError
    if isinstance(exc, AuthenticationError):
        return CliError(f'wrong user name or password for {user} on {server}', failures.AUTHENTICATION)
    if isinstance(exc, OfflineError):
        reason = unreachable_reason(api_url) or one_line(str(exc))
        return CliError(f'server {server} unreachable: {reason}', failures.UNREACHABLE)
    if isinstance(exc, ServerError) and (exc.status in (404, 405, 501)
                                         or str(exc.body.get('detail', '')).lstrip().startswith('<')):
        return CliError(f'{server} answers, but is no oaio server: its login {api_url}login/ answered '
                        f'HTTP {exc.status}', failures.REFUSED)
    return CliError(f'cannot log in to {server}: {one_line(str(exc))}', failures.REFUSED)


# commands -----------------------------------------------------------------------------------

def cmd_mount(args) -> int:
    require_mount_packages()
    from oaio.client import OaioClient, OaioError, StoreLockedError
    from .names import is_temp_path

    mountpoint = prepare_mountpoint(args.mountpoint, args.allow_non_empty)
    password = read_password(args.password_file)
    cache = Path(args.cache).resolve() if args.cache else default_cache(args.server, args.user)
    first_mount = not has_cache(cache)          # before the client makes its store there
    ready_read, ready_write = os.pipe()
    if not args.foreground and os.fork() > 0:
        os.close(ready_write)
        return _wait_until_mounted(ready_read, cache)
    if not args.foreground:
        os.close(ready_read)        # in front nobody reads, but the read end stays open: 'ready' must not hit EPIPE
        os.setsid()
    setup_logging(cache / 'oaio.log', args.verbose)
    try:
        client = OaioClient(args.server, {'username': args.user, 'password': password}, app_id='oaio-mount',
                            device_id=args.device or '', client_root=str(cache), auto_sync=False,
                            ignore_file=is_temp_path)
    except StoreLockedError as exc:
        return _mount_failed(CliError(str(exc), failures.MOUNT_FAILED), ready_write, args.foreground)
    warning = ''
    try:
        client.login()
    except OaioError as exc:
        error = login_error(exc, args.server, args.user, client.server_url)
        if error.code != failures.UNREACHABLE or first_mount:     # nothing cached to show: say so, as rclone does
            client.close()
            return _mount_failed(error, ready_write, args.foreground)
        warning = f'{error}; mounting the cached objects offline, changes sync when it is back'
        log.warning('%s', warning)
        if args.foreground:
            print(f'oaio: warning: {warning}', file=sys.stderr, flush=True)
    if not args.foreground:
        _detach_stdio()
    return _run_mount(client, mountpoint, ready_write, warning)


def _wait_until_mounted(ready_read: int, cache: Path) -> int:
    """In the parent: wait for the mount process's word (``ready`` and a warning, or ``CODE message``)."""
    message = os.read(ready_read, 4096).decode()
    if message.startswith('ready'):
        warning = message.removeprefix('ready').strip()
        if warning:
            print(f'oaio: warning: {warning}', file=sys.stderr)
        return failures.OK
    code, _, text = message.partition(' ')
    if not code.isdigit():
        raise CliError(f'the mount process ended without a word; see {cache / "oaio.log"}', failures.MOUNT_FAILED)
    raise CliError(text, int(code))


def _mount_failed(error: CliError, ready_write: int, foreground: bool) -> int:
    """Before mounting: tell the waiting parent, or (in front) the user on stderr."""
    if foreground:
        raise error
    os.write(ready_write, f'{error.code} {error}'.encode())
    return error.code


def _detach_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _run_mount(client, mountpoint: str, ready_write: int, warning: str) -> int:
    import trio

    from .runner import Mount

    async def main():
        mount = Mount(client, mountpoint)
        async with trio.open_nursery() as nursery:
            await nursery.start(mount.run)
            log.info('mounted %s on %s', client.server_url, mountpoint)
            os.write(ready_write, f'ready\n{warning}'.encode())
            os.close(ready_write)
            notify_systemd('READY=1')

    try:
        trio.run(main)
    except Exception as exc:
        log.exception('the mount failed')
        try:
            os.write(ready_write, f'{failures.MOUNT_FAILED} mount failed: {one_line(str(exc))}'.encode())
        except OSError:
            pass
        return failures.MOUNT_FAILED
    finally:
        client.close()
    log.info('unmounted %s', mountpoint)
    return 0


def notify_systemd(state: str) -> None:
    """Tell systemd how the mount is (``READY=1``) when a ``Type=notify`` unit started it.

    The whole of sd_notify that a service needs is this: one datagram to the socket named by
    $NOTIFY_SOCKET (``@`` for an abstract one). Ten lines, so no library for it.
    """
    address = os.environ.get('NOTIFY_SOCKET')
    if not address:
        return
    if address.startswith('@'):
        address = '\0' + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning('cannot tell systemd %s: %s', state, exc)


def cmd_umount(args) -> int:
    mountpoint = os.path.abspath(args.mountpoint)
    pid = int(mount_attr(mountpoint, 'pid'))
    result = subprocess.run(['fusermount3', '-u', mountpoint], capture_output=True, text=True)
    if result.returncode:
        raise CliError(f'cannot unmount {mountpoint}: {one_line(result.stderr)}', failures.MOUNT_FAILED)
    deadline = time.monotonic() + args.timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(pid):
        raise CliError(f'unmounted, but the mount process {pid} is still uploading; it goes on in the background',
                       failures.MOUNT_FAILED)
    return 0


def _running(pid: int) -> bool:
    """Is process ``pid`` still at work? (A zombie has ended: only its parent has not reaped it yet.)"""
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[-1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmd_status(args) -> int:
    mountpoints = [os.path.abspath(args.mountpoint)] if args.mountpoint else oaio_mounts()
    for mountpoint in mountpoints:
        if not os.path.lexists(mountpoint):
            raise CliError(f'{mountpoint} does not exist', failures.NOT_FOUND)
    states = {mountpoint: _status(mountpoint) for mountpoint in mountpoints}
    if args.json:
        print(json.dumps(states, indent=2))
        return failures.OK
    if not states:
        print('no oaio drive is mounted')
    for mountpoint, state in states.items():
        print(f'{mountpoint}: {"online" if state["online"] else "OFFLINE"}  {state["user"]} at {state["server"]}')
        print(f'  objects {state["objects"]}  pending {state["pending"]}  conflicts {state["conflicts"]}  '
              f'errors {state["errors"]}  last sync {state["last_sync"] or "never"}')
        if state.get('last_error'):
            print(f'  last sync incomplete: {state["last_error"]}')
    return failures.OK


def _status(mountpoint: str) -> dict:
    """The drive's status attribute, its last sync as ISO 8601 in UTC (None if never)."""
    state = json.loads(mount_attr(mountpoint, 'status'))
    state['last_sync'] = iso_time(state.get('last_sync') or '')
    return state


def iso_time(stamp: str) -> str | None:
    """A stamp (``YYYYMMDDhhmmss…``, UTC) as ISO 8601: ``2026-12-02T08:52:30Z``; None for ''."""
    if not stamp:
        return None
    return f'{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]}Z'


def _object_dir(path: str) -> str:
    """The object directory (a child of the mount root) that holds ``path``."""
    path = os.path.abspath(path)
    for mountpoint in oaio_mounts():
        if path.startswith(mountpoint.rstrip('/') + '/'):
            return os.path.join(mountpoint, os.path.relpath(path, mountpoint).split('/')[0])
    raise CliError(f'{path} is not inside an oaio drive', failures.NOT_FOUND)


def cmd_share(args) -> int:
    directory = _object_dir(args.path)
    try:
        os.setxattr(directory, 'user.oaio.share', f'{args.user}:{args.right}'.encode())
    except OSError as exc:
        reason, code = {errno.EACCES: ('only an owner (right C) can share', failures.REFUSED),
                        errno.ENOENT: (f'no user {args.user!r}', failures.NOT_FOUND),
                        errno.EINVAL: ('invalid user or right', failures.USAGE)}.get(exc.errno, _os_failure(exc))
        raise CliError(f'cannot share {directory}: {reason}', code) from None
    print(f'{os.path.basename(directory)}: {args.user} now has right {args.right}')
    return 0


def cmd_access(args) -> int:
    directory = _object_dir(args.path)
    try:
        rows = json.loads(os.getxattr(directory, 'user.oaio.access'))
    except OSError as exc:
        reason, code = _os_failure(exc)
        raise CliError(f'cannot read the access list of {directory}: {reason}', code) from None
    for row in rows:
        print(f'{row["access_right"]}  {row["username"]}')
    return 0


def _os_failure(exc: OSError) -> tuple[str, int]:
    """The reason and exit code of a drive's sharing attribute that failed (the server answers them)."""
    unreachable = exc.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED)
    return exc.strerror or str(exc), failures.UNREACHABLE if unreachable else failures.REFUSED


class ProgressPrinter:
    """Transfer progress on stderr: one line per file, redrawn at most ten times a second."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.shown_at, self.terminal = stream, 0.0, stream.isatty()

    def __call__(self, direction: str, path: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.shown_at < 0.1:
            return
        self.shown_at = now
        percent = 100 * done // total if total else 100
        arrow = '↑' if direction == 'up' else '↓'
        line = f'{arrow} {path}  {done / 1e6:.1f}/{total / 1e6:.1f} MB  {percent}%'
        end = '\n' if done >= total or not self.terminal else ''
        print(('\r\033[K' if self.terminal else '') + line, end=end, file=self.stream, flush=True)


def cmd_sync(args) -> int:
    from oaio.client import OaioClient, OaioError, StoreLockedError
    setup_logging(None, args.verbose)
    password = read_password(args.password_file)
    try:
        with OaioClient(args.server, {'username': args.user, 'password': password}, app_id='oaio-sync',
                        device_id=args.device or '', client_root=args.cache, auto_sync=False) as client:
            try:
                client.login()
            except OaioError as exc:
                raise login_error(exc, args.server, args.user, client.server_url) from None
            if args.progress or sys.stderr.isatty():
                client.report_progress(ProgressPrinter())
            ok = client.synchronize_with_server_if_online()
            objects = client.client_objectz
            pending = sum(obj.pending for obj in objects.values())
            print(f'{len(objects)} objects, {pending} pending')
            if ok:
                return failures.OK
            print(f'oaio: sync incomplete: {one_line(client.error_message)}', file=sys.stderr)
            return failures.REFUSED if client.online else failures.UNREACHABLE
    except StoreLockedError as exc:
        raise CliError(str(exc), failures.MOUNT_FAILED) from None


# parser -------------------------------------------------------------------------------------

RIGHTS_HELP = ('r read; U update (r, and change values and files); D delete (U, and delete the object); '
               'C owner (D, and share it); x removes the share')


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with ``failures.USAGE`` (argparse's own 2 means "not found" here)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(failures.USAGE, f'{self.prog}: error: {message}\n')


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog='oaio', description='Mount and sync oai objects.',
                     epilog='exit codes: 0 ok, 1 usage or bad input, 2 not found or not a drive, 3 server '
                            'unreachable, 4 authentication failed, 5 refused by the server (or no oaio server), '
                            '6 mount or unmount failed')
    parser.add_argument('--version', action='version', version=f"oaio {importlib.metadata.version('oaio')}")
    commands = parser.add_subparsers(dest='command', required=True)

    mount = commands.add_parser('mount', help='mount your objects as a drive')
    mount.add_argument('server', help='host[:port] (plain http only for localhost, 127.0.0.0/8 and ::1) '
                       'or a full URL')
    mount.add_argument('mountpoint')
    mount.add_argument('--user', required=True)
    mount.add_argument('--password-file', help='file holding the password (mode 0600); else $OAIO_PASSWORD or a prompt')
    mount.add_argument('--cache', help='cache directory (default ~/.local/state/oaio/USER@SERVER)')
    mount.add_argument('--device', help='id of this device (default: the host name)')
    mount.add_argument('--foreground', action='store_true', help='stay in front instead of returning when mounted')
    mount.add_argument('--allow-non-empty', action='store_true',
                       help='mount on a directory that holds files (hidden while the drive is mounted)')
    mount.add_argument('-v', '--verbose', action='store_true', help='debug logging, also to stderr')
    mount.set_defaults(func=cmd_mount)

    umount = commands.add_parser('umount', help='unmount; pending uploads are sent or kept for the next mount')
    umount.add_argument('mountpoint')
    umount.add_argument('--timeout', type=float, default=60.0, help='seconds to wait for the uploads (default 60)')
    umount.set_defaults(func=cmd_umount)

    status = commands.add_parser('status', help='online?, pending uploads, conflicts, last sync')
    status.add_argument('mountpoint', nargs='?')
    status.add_argument('--json', action='store_true')
    status.set_defaults(func=cmd_status)

    share = commands.add_parser('share', help='share the object holding PATH with USER')
    share.add_argument('path')
    share.add_argument('user')
    share.add_argument('--right', default='r', choices=['r', 'U', 'D', 'C', 'x'],
                       help=f'the right USER gets (default r): {RIGHTS_HELP}')
    share.set_defaults(func=cmd_share)

    access = commands.add_parser('access', help='who has which right to the object holding PATH')
    access.add_argument('path')
    access.set_defaults(func=cmd_access)

    sync = commands.add_parser('sync', help='one synchronization without a mount')
    sync.add_argument('server')
    sync.add_argument('--user', required=True)
    sync.add_argument('--cache', required=True)
    sync.add_argument('--password-file')
    sync.add_argument('--device')
    sync.add_argument('--progress', action='store_true', help='show transfer progress also when stderr is no terminal')
    sync.add_argument('-v', '--verbose', action='store_true')
    sync.set_defaults(func=cmd_sync)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``oaio``."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f'oaio: {exc}', file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
