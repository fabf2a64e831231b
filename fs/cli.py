"""The ``oaio`` command: mount, umount, status, share, access, sync."""
from __future__ import annotations

import argparse
import errno
import getpass
import importlib.metadata
import json
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger('oaio')


class CliError(Exception):
    """A one-line error for the user; exits with status 1."""


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
    base = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'oaio'
    return base / re.sub(r'[^A-Za-z0-9_.@-]', '_', f'{user}@{server}')


def setup_logging(log_file: Path | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = []
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handlers.append(logging.FileHandler(log_file))
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
        raise CliError(f'{mountpoint} is not an oaio mount ({exc.strerror})') from None


# commands -----------------------------------------------------------------------------------

def cmd_mount(args) -> int:
    require_mount_packages()
    from oaio.client import AuthenticationError, OaioClient, OaioError, OfflineError, StoreLockedError
    from .names import is_temp_path

    mountpoint = prepare_mountpoint(args.mountpoint, args.allow_non_empty)
    password = read_password(args.password_file)
    cache = Path(args.cache).resolve() if args.cache else default_cache(args.server, args.user)
    ready_read, ready_write = os.pipe()
    if not args.foreground and os.fork() > 0:
        os.close(ready_write)
        message = os.read(ready_read, 4096).decode()
        if message != 'ready':
            raise CliError(message or 'the mount process ended without a word; see ' + str(cache / 'oaio.log'))
        return 0
    if not args.foreground:
        os.close(ready_read)        # in front nobody reads, but the read end stays open: 'ready' must not hit EPIPE
        os.setsid()
    setup_logging(cache / 'oaio.log', args.verbose)
    try:
        client = OaioClient(args.server, {'username': args.user, 'password': password}, app_id='oaio-mount',
                            device_id=args.device or '', client_root=str(cache), auto_sync=False,
                            ignore_file=is_temp_path)
    except StoreLockedError as exc:
        return _mount_failed(str(exc), ready_write, args.foreground)
    try:
        client.login()
    except AuthenticationError:
        client.close()
        return _mount_failed(f'wrong user name or password for {args.user} on {args.server}', ready_write,
                             args.foreground)
    except OfflineError:
        log.warning('server %s unreachable: mounting the cached objects; changes sync when it is back',
                    args.server)
    except OaioError as exc:        # the server answered, but not as an oaio server (a redirect, a 500)
        client.close()
        return _mount_failed(f'cannot log in to {args.server}: {exc}', ready_write, args.foreground)
    if not args.foreground:
        _detach_stdio()
    return _run_mount(client, mountpoint, ready_write)


def _mount_failed(message: str, ready_write: int, foreground: bool) -> int:
    """Before mounting: tell the waiting parent, or (in front) the user on stderr."""
    if foreground:
        raise CliError(message)
    os.write(ready_write, message.encode())
    return 1


def _detach_stdio() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _run_mount(client, mountpoint: str, ready_write: int) -> int:
    import trio

    from .runner import Mount

    async def main():
        mount = Mount(client, mountpoint)
        async with trio.open_nursery() as nursery:
            await nursery.start(mount.run)
            log.info('mounted %s on %s', client.server_url, mountpoint)
            os.write(ready_write, b'ready')
            os.close(ready_write)
            notify_systemd('READY=1')

    try:
        trio.run(main)
    except Exception as exc:
        log.exception('the mount failed')
        try:
            os.write(ready_write, f'mount failed: {exc}'.encode())
        except OSError:
            pass
        return 1
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
        raise CliError(f'cannot unmount {mountpoint}: {result.stderr.strip()}')
    deadline = time.monotonic() + args.timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _running(pid):
        raise CliError(f'unmounted, but the mount process {pid} is still uploading; it goes on in the background')
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
    states = {mountpoint: json.loads(mount_attr(mountpoint, 'status')) for mountpoint in mountpoints}
    if args.json:
        print(json.dumps(states, indent=2))
        return 0
    if not states:
        print('no oaio drive is mounted')
    for mountpoint, state in states.items():
        print(f'{mountpoint}: {"online" if state["online"] else "OFFLINE"}  {state["user"]} at {state["server"]}')
        print(f'  objects {state["objects"]}  pending {state["pending"]}  conflicts {state["conflicts"]}  '
              f'errors {state["errors"]}  last sync {_readable_stamp(state["last_sync"])}')
        if state.get('last_error'):
            print(f'  last sync incomplete: {state["last_error"]}')
    return 0


def _readable_stamp(stamp: str) -> str:
    if not stamp:
        return 'never'
    return f'{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}:{stamp[12:14]} UTC'


def _object_dir(path: str) -> str:
    """The object directory (a child of the mount root) that holds ``path``."""
    path = os.path.abspath(path)
    for mountpoint in oaio_mounts():
        if path.startswith(mountpoint.rstrip('/') + '/'):
            return os.path.join(mountpoint, os.path.relpath(path, mountpoint).split('/')[0])
    raise CliError(f'{path} is not inside an oaio mount')


def cmd_share(args) -> int:
    directory = _object_dir(args.path)
    try:
        os.setxattr(directory, 'user.oaio.share', f'{args.user}:{args.right}'.encode())
    except OSError as exc:
        reason = {errno.EACCES: 'only an owner (right C) can share', errno.ENOENT: f'no user {args.user!r}',
                  errno.EINVAL: 'invalid user or right'}.get(exc.errno, exc.strerror)
        raise CliError(f'cannot share {directory}: {reason}') from None
    print(f'{os.path.basename(directory)}: {args.user} now has right {args.right}')
    return 0


def cmd_access(args) -> int:
    directory = _object_dir(args.path)
    try:
        rows = json.loads(os.getxattr(directory, 'user.oaio.access'))
    except OSError as exc:
        raise CliError(f'cannot read the access list of {directory}: {exc.strerror}') from None
    for row in rows:
        print(f'{row["access_right"]}  {row["username"]}')
    return 0


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
    from oaio.client import OaioClient, StoreLockedError
    setup_logging(None, args.verbose)
    password = read_password(args.password_file)
    try:
        with OaioClient(args.server, {'username': args.user, 'password': password}, app_id='oaio-sync',
                        device_id=args.device or '', client_root=args.cache, auto_sync=False) as client:
            if args.progress or sys.stderr.isatty():
                client.report_progress(ProgressPrinter())
            ok = client.synchronize_with_server_if_online()
            objects = client.client_objectz
            pending = sum(obj.pending for obj in objects.values())
            print(f'{len(objects)} objects, {pending} pending' + ('' if ok else f'\n{client.error_message}'))
            return 0 if ok else 1
    except StoreLockedError as exc:
        raise CliError(str(exc)) from None


# parser -------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='oaio', description='Mount and sync oai objects.')
    parser.add_argument('--version', action='version', version=f"oaio {importlib.metadata.version('oaio')}")
    commands = parser.add_subparsers(dest='command', required=True)

    mount = commands.add_parser('mount', help='mount your objects as a drive')
    mount.add_argument('server', help='host[:port] (http for localhost/127.0.0.1) or a full URL')
    mount.add_argument('mountpoint')
    mount.add_argument('--user', required=True)
    mount.add_argument('--password-file', help='file holding the password (mode 0600); else $OAIO_PASSWORD or a prompt')
    mount.add_argument('--cache', help='cache directory (default ~/.cache/oaio/USER@SERVER)')
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
    share.add_argument('--right', default='r', choices=['r', 'U', 'D', 'C', 'x'], help='x removes the share')
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
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
