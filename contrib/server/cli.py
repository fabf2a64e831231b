"""The ``oaio-server`` command: serve, adduser, gc, stats, and Django's management commands."""
import argparse
import fcntl
import getpass
import importlib.metadata
import json
import os
import sys

DEFAULT_BIND = '127.0.0.1:8000'


def _setup(data: str | None) -> None:
    """Point the settings at the data directory and start Django."""
    if data:
        os.environ['OAIO_DATA'] = os.path.abspath(data)
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'oaio.server.settings')
    import django
    django.setup()


def _make_directories() -> None:
    from django.conf import settings
    for directory in (settings.DATA_DIR, settings.BLOB_DIR, settings.TMP_DIR):
        directory.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.DATA_DIR, 0o700)


def _migrate() -> None:
    from django.conf import settings
    from django.core.management import call_command
    _make_directories()
    # one migration at a time: `serve` and `adduser` may start together on a new data directory
    with open(settings.DATA_DIR / 'migrate.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        call_command('migrate', interactive=False, verbosity=0)


def _parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(':')
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f'oaio-server: --bind must be HOST:PORT, got {bind!r}')
    return host.strip('[]'), int(port)


def _not_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f'must be a whole number of seconds, 0 or more, got {text!r}')
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f'must be a whole number of at least 1, got {text!r}')
    return int(text)


def serve(args) -> int:
    """Migrate the data directory if needed, then serve with uvicorn until SIGTERM/SIGINT."""
    host, port = _parse_bind(args.bind)
    _setup(args.data)
    _migrate()
    import tempfile

    import uvicorn
    from django.conf import settings

    from . import gc, serving
    # request bodies are spooled to disk by Django's ASGI handler: keep them on the data disk (TMPDIR
    # for the worker processes of --workers, which start afresh)
    tempfile.tempdir = os.environ['TMPDIR'] = str(settings.TMP_DIR)
    line_format = settings.LOGGING['formatters']['plain']['format']     # uvicorn's lines as the oaio loggers'
    # X-Forwarded-For/-Proto only from configured proxies: uvicorn's default believes them from
    # 127.0.0.1, so any local process could pose as any client address to the login throttle
    config = uvicorn.Config('oaio.server.asgi:application', host=host, port=port, lifespan='off',
                            log_level=args.log_level, access_log=args.access_log, timeout_graceful_shutdown=3,
                            proxy_headers=bool(settings.OAIO_TRUSTED_PROXIES),
                            forwarded_allow_ips=settings.OAIO_TRUSTED_PROXIES or None,
                            workers=args.workers, log_config=serving.log_config(line_format))
    gc.start_periodic()             # this process only: with --workers, the supervisor
    try:
        return serving.run(config)
    finally:
        gc.stop_periodic()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip('\n')
    password = getpass.getpass('Password: ')
    if password != getpass.getpass('Password (again): '):
        raise SystemExit('oaio-server: the passwords do not match')
    return password


def adduser(args) -> int:
    """Create a user (optionally staff, who may use /admin/)."""
    _setup(args.data)
    _migrate()
    from django.contrib.auth import get_user_model
    users = get_user_model()
    if users.objects.filter(username=args.name).exists():
        print(f'oaio-server: user {args.name!r} exists already', file=sys.stderr)
        return 1
    password = _read_password(args.password_stdin)
    if not password:
        print('oaio-server: the password must not be empty', file=sys.stderr)
        return 1
    users.objects.create_user(args.name, password=password, is_staff=args.staff, is_superuser=args.staff)
    print(f'added user {args.name}' + (' (staff)' if args.staff else ''))
    return 0


def collect_garbage(args) -> int:
    """Delete chunks no version and no staged file names, expired staged files, and stored files
    without a row; print what was (or, with --dry-run, would be) removed."""
    _setup(args.data)
    _migrate()
    from django.conf import settings

    from . import gc
    grace = settings.OAIO_GC_GRACE_SECONDS if args.grace is None else args.grace
    result = gc.collect(grace, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(result))
        return 0
    verb = 'would remove' if args.dry_run else 'removed'
    print(f'{verb} {result["chunks"]} chunks ({result["bytes"]} bytes) no version or staged file names '
          f'(stored more than {grace} s ago)')
    print(f'{verb} {result["staged_files"]} staged files older than {settings.OAIO_STAGED_DAYS:g} days')
    if result.get('orphans_note'):
        print(result['orphans_note'])
    else:
        print(f'{verb} {result["orphans"]} stored files without a row ({result["orphan_bytes"]} bytes)')
    return 0


def _size(count: int) -> str:
    for unit in ('bytes', 'KiB', 'MiB', 'GiB', 'TiB'):
        if count < 1024 or unit == 'TiB':
            return f'{count} bytes' if unit == 'bytes' else f'{count:.1f} {unit}'
        count /= 1024


def stats(args) -> int:
    """Print what the store holds: objects, versions, chunks, bytes, the dedup ratio, staged files, users."""
    _setup(args.data)
    _migrate()
    from . import gc
    numbers = gc.stats()
    if args.json:
        print(json.dumps(numbers))
        return 0
    ratio = numbers['dedup_ratio']
    rows = [('objects', numbers['objects']), ('versions', numbers['versions']), ('chunks', numbers['chunks']),
            ('stored bytes', f'{numbers["stored_bytes"]} ({_size(numbers["stored_bytes"])}, each chunk once)'),
            ('logical bytes', f'{numbers["logical_bytes"]} ({_size(numbers["logical_bytes"])}, '
                              f'the {numbers["head_files"]} files of the newest versions)'),
            ('dedup ratio', '-' if ratio is None else f'{ratio:.2f} (logical / stored)'),
            ('staged files', numbers['staged_files']), ('users', numbers['users'])]
    for name, value in rows:
        print(f'{name:<14} {value}')
    return 0


def manage(args) -> int:
    """Run a Django management command against the data directory (e.g. changepassword NAME)."""
    _setup(args.data)
    _make_directories()         # Django's checks want FILE_UPLOAD_TEMP_DIR (a restored data directory has none)
    from django.core.management import execute_from_command_line
    execute_from_command_line(['oaio-server manage', *args.command])
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='oaio-server', description='The oaio server.')
    parser.add_argument('--version', action='version', version=f"oaio {importlib.metadata.version('oaio')}")
    commands = parser.add_subparsers(dest='command_name', required=True)
    data_help = 'data directory (database, blobs, secret key); default: $OAIO_DATA or ./oaio-data'

    serve_cmd = commands.add_parser('serve', help='serve the API and /admin/ (migrates on first start)')
    serve_cmd.add_argument('--data', help=data_help)
    serve_cmd.add_argument('--bind', default=DEFAULT_BIND, help=f'HOST:PORT to listen on (default {DEFAULT_BIND})')
    serve_cmd.add_argument('--log-level', default='info', choices=['critical', 'error', 'warning', 'info', 'debug'])
    serve_cmd.add_argument('--no-access-log', dest='access_log', action='store_false', help='do not log requests')
    serve_cmd.add_argument('--workers', type=_positive, default=1,
                           help='worker processes, each with its own event loop and threads (default 1)')
    serve_cmd.set_defaults(func=serve)

    adduser_cmd = commands.add_parser('adduser', help='add a user')
    adduser_cmd.add_argument('name')
    adduser_cmd.add_argument('--data', help=data_help)
    adduser_cmd.add_argument('--password-stdin', action='store_true', help='read the password from stdin')
    adduser_cmd.add_argument('--staff', action='store_true', help='staff: may use the admin at /admin/')
    adduser_cmd.set_defaults(func=adduser)

    gc_cmd = commands.add_parser('gc', help='delete chunks no version or staged file names, expired staged files '
                                            'and stored files without a row (the server does it every '
                                            '$OAIO_GC_INTERVAL_SECONDS)')
    gc_cmd.add_argument('--data', help=data_help)
    gc_cmd.add_argument('--dry-run', action='store_true', help='only count what would be removed')
    gc_cmd.add_argument('--grace', type=_not_negative, metavar='SECONDS',
                        help='keep chunks stored less than this long ago (default $OAIO_GC_GRACE_SECONDS or 86400; '
                             '0 is safe only while no upload runs)')
    gc_cmd.add_argument('--json', action='store_true', help='print the result as JSON')
    gc_cmd.set_defaults(func=collect_garbage)

    stats_cmd = commands.add_parser('stats', help='objects, versions, chunks, stored and logical bytes, dedup ratio')
    stats_cmd.add_argument('--data', help=data_help)
    stats_cmd.add_argument('--json', action='store_true', help='print them as JSON')
    stats_cmd.set_defaults(func=stats)

    manage_cmd = commands.add_parser('manage', help="run a Django management command, e.g. 'changepassword NAME'")
    manage_cmd.add_argument('--data', help=data_help)
    manage_cmd.add_argument('command', nargs=argparse.REMAINDER)
    manage_cmd.set_defaults(func=manage)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``oaio-server``."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
