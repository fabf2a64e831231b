"""ASGI entry point: the change feed's long poll, file downloads and uploads, and the health check in
front of Django (see longpoll.py, downloads.py, uploads.py, health.py), and every other request
through the body gate (front.guarded) to Django."""
import asyncio
import errno
import functools
import logging
import os

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'oaio.server.settings')

from django.core.asgi import get_asgi_application  # noqa: E402  (needs the settings module set)

django_application = get_asgi_application()

from . import health, longpoll, metrics, packs  # noqa: E402  (need Django set up)
from .downloads import download_app, file_address  # noqa: E402
from .errors import Unavailable  # noqa: E402
from .front import guarded, send_error  # noqa: E402
from .uploads import upload_app  # noqa: E402

log = logging.getLogger('oaio.server')


def _route(scope) -> tuple[str, callable]:
    """The kind of an HTTP request's route (few values: a metrics label) and the app that answers it."""
    path = scope['path']
    if path == longpoll.PATH:
        return 'changes', longpoll.changes_app
    if path == health.PATH:
        return 'healthz', health.health_app
    if path == metrics.PATH:
        return 'metrics', metrics.metrics_app
    if path == packs.UPLOAD_PATH:
        return 'chunks-put', packs.upload_app
    if path == packs.FETCH_PATH:
        return 'chunks-get', packs.fetch_app
    if (address := file_address(scope)) is not None and scope['method'] in ('GET', 'PUT'):
        if scope['method'] == 'GET':
            return 'files-get', functools.partial(download_app, address=address)
        return 'files-put', functools.partial(upload_app, address=address)
    kind = 'api' if path.startswith('/api/') else 'admin' if path.startswith('/admin/') else 'other'
    return kind, functools.partial(guarded, django_application)


async def application(scope, receive, send):
    """Route ``api/changes/`` to the long-poll app, ``healthz`` and ``metrics`` to theirs, GETs of
    ``api/files/…`` to the download app, PUTs there to the upload app, and everything else through
    the body gate to Django; count every HTTP request in the metrics."""
    if scope['type'] != 'http':
        await _serve(django_application, scope, receive, send)
        return
    route, app = _route(scope)
    with metrics.measured(scope['method'], route, send) as measured_send:
        await _serve(app, scope, receive, measured_send)


async def _serve(app, scope, receive, send):
    """Let ``app`` answer; a full disk before any answer is a 507, a shutdown cutting it off a 503."""
    started = False

    async def tracked_send(message):
        nonlocal started
        if message['type'] == 'http.response.start':
            started = True
        await send(message)

    try:
        await app(scope, receive, tracked_send)
    except OSError as exc:
        # the disk is full while Django spools the request body (before any view runs): a clear
        # 507 the client retries, not a 500 with a traceback (errors.py does the same for views)
        if exc.errno != errno.ENOSPC or started:
            raise
        await _answer(send, exc, scope)     # logged there, as for views
    except asyncio.CancelledError:
        # uvicorn cancels requests still running when its graceful shutdown time is over (e.g. a
        # long upload at SIGTERM): not an error; the client gets a 503 and retries later
        log.info('%s %s cut off: the server is shutting down', scope.get('method', ''), scope.get('path', ''))
        await _answer(send, Unavailable('the server is shutting down; try again'), scope)


async def _answer(send, exc: Exception, scope) -> None:
    try:
        await send_error(send, exc, scope)
    except (OSError, RuntimeError):
        pass        # the answer had started already, or the connection is gone
