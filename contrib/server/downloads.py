"""``GET api/files/<oaio_id>/<stamp>/<path>`` as a plain ASGI app beside Django.

A fresh device asks for every attached file, one request each, and Django's request path cost
about 7 ms of CPU per file: a new thread and a new database connection per request, the async
middleware stack with its thread hops, and the version's whole manifest decoded every time. This
app makes the same checks in the same order (host, session, X-OAIO headers, address, then
objects.file_entry, shared with the view) with Django's own functions, in one hop to a small pool
of threads that keep their database connections, and answers with the same status, JSON error
bodies (errors.answer_for) and headers. The content is sent in chunks of a MiB.
"""
import asyncio
import functools
import io
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import BadRequest, DisallowedHost
from django.core.files import File
from django.core.files.storage import storages
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connection
from django.urls import Resolver404, resolve

from oaio.client import protocol as p

from . import objects, views
from .blobs import CHUNK_BYTES, blob_name
from .errors import NotAuthenticated, answer_for

PREFIX = '/api/files/'
WORKERS = 4

# Threads that keep their database connection between requests: opening one costs about 0.5 ms on
# SQLite, as much as the rest of a file request. (Django's CONN_MAX_AGE cannot do this for its own
# requests: each runs in a new thread, whose connection would be left to the garbage collector.)
_executor = ThreadPoolExecutor(WORKERS, thread_name_prefix='oaio-files')


@functools.cache
def _middleware_headers() -> list[tuple[bytes, bytes]]:
    """The headers Django's middleware adds to every answer of the API (security, session)."""
    headers = {'Vary': 'Cookie', 'X-Frame-Options': settings.X_FRAME_OPTIONS,
               'Referrer-Policy': settings.SECURE_REFERRER_POLICY,
               'Cross-Origin-Opener-Policy': settings.SECURE_CROSS_ORIGIN_OPENER_POLICY}
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers['X-Content-Type-Options'] = 'nosniff'
    return [(name.lower().encode(), value.encode('latin-1')) for name, value in headers.items() if value]


def file_address(scope) -> dict | None:
    """The URL's ``oaio_id``, ``stamp`` and ``path`` when ``scope`` is a GET of ``files/…``, else None
    (then Django answers: other methods, and URLs its resolver does not route to views.files)."""
    if scope['type'] != 'http' or scope['method'] != 'GET' or not scope['path'].startswith(PREFIX):
        return None
    try:
        match = resolve(scope['path'])
    except Resolver404:
        return None
    return match.kwargs if match.func is views.files else None


def _keep_connection() -> None:
    """Reuse this thread's database connection, unless it stopped working (a restarted PostgreSQL)."""
    if connection.connection is not None and not connection.is_usable():
        connection.close()


def _check_host(request) -> None:
    try:
        request.get_host()
    except DisallowedHost:          # Django's CommonMiddleware raises it, and handler400 answers
        raise BadRequest('bad request') from None


def _open(scope, address: dict) -> tuple[dict, File, bytes]:
    """Check the request as Django and views.files would; return the file's manifest entry, its
    blob opened, and the blob's first chunk (most files fit in one: no second thread hop)."""
    _keep_connection()
    try:
        request = ASGIRequest(scope, io.BytesIO())
        _check_host(request)
        store = import_module(settings.SESSION_ENGINE).SessionStore
        request.session = store(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        request.user = get_user(request)
        if not request.user.is_authenticated:
            raise NotAuthenticated('log in first (POST login/)')
        views.context_of(request)               # malformed X-OAIO headers → 400
        oaio_id, stamp, path = views.file_address(address['oaio_id'], address['stamp'], address['path'])
        entry = objects.file_entry(request.user, oaio_id, stamp, path)
    except DatabaseError:
        connection.close()                      # the next request opens a new one
        raise
    content = storages['blobs'].open(blob_name(entry['sha256']), 'rb')
    try:
        return entry, content, content.read(min(CHUNK_BYTES, entry['size']))
    except BaseException:
        content.close()
        raise


async def _send_error(send, exc: Exception, scope) -> None:
    answer = answer_for(exc, scope['method'], scope['path'])
    answer['Content-Length'] = str(len(answer.content))
    headers = [(name.lower().encode(), value.encode('latin-1')) for name, value in answer.items()]
    await send({'type': 'http.response.start', 'status': answer.status_code,
                'headers': headers + _middleware_headers()})
    await send({'type': 'http.response.body', 'body': answer.content})


async def _stream(send, entry: dict, content: File, chunk: bytes, disconnected: asyncio.Future) -> None:
    loop = asyncio.get_running_loop()
    await send({'type': 'http.response.start', 'status': 200, 'headers': [
        (b'content-type', b'application/octet-stream'), (b'content-length', str(entry['size']).encode()),
        (p.HEADER_SHA256.lower().encode(), entry['sha256'].encode()), *_middleware_headers()]})
    left = entry['size'] - len(chunk)
    while True:
        await send({'type': 'http.response.body', 'body': chunk, 'more_body': left > 0})
        if left <= 0 or disconnected.done():
            return
        chunk = await loop.run_in_executor(_executor, content.read, min(CHUNK_BYTES, left))
        if not chunk:
            raise OSError(f'blob {entry["sha256"]} is shorter than its size {entry["size"]}')
        left -= len(chunk)


async def _watch_disconnect(receive) -> None:
    while (await receive())['type'] != 'http.disconnect':
        pass


async def download_app(scope, receive, send, address: dict) -> None:
    """ASGI app of one file download (``address`` from :func:`file_address`)."""
    loop = asyncio.get_running_loop()
    try:
        entry, content, chunk = await loop.run_in_executor(_executor, _open, scope, address)
    except Exception as exc:
        await _send_error(send, exc, scope)
        return
    disconnected = asyncio.ensure_future(_watch_disconnect(receive))
    try:
        await _stream(send, entry, content, chunk, disconnected)
    finally:
        disconnected.cancel()
        content.close()
