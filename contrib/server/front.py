"""The front door: what the plain ASGI apps beside Django (downloads, uploads, the body gate) share.

Django's ASGI handler reads a request's whole body (into memory, then a temporary file) before any
middleware or view runs — before the session, CSRF token or size limit is looked at. So whatever
must be refused before the body is read is decided here, with Django's own functions (host check,
session store, CSRF middleware, X-OAIO headers), and answered with the same JSON errors
(errors.answer_for) and middleware headers as Django's answers.
"""
import asyncio
import functools
import io
import json
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import BadRequest, DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError, connection
from django.http import QueryDict
from django.middleware.csrf import CsrfViewMiddleware

from . import views
from .errors import ApiError, NotAuthenticated, TooLarge, answer_for

WORKERS = 4
OPEN_BODY_BYTES = 64 * 1024     # bodies up to this size Django may read before it knows the caller (login/)

# Threads that keep their database connection between requests: opening one costs about 0.5 ms on
# SQLite, as much as the rest of a file request. (Django's CONN_MAX_AGE cannot do this for its own
# requests: each runs in a new thread, whose connection would be left to the garbage collector.)
executor = ThreadPoolExecutor(WORKERS, thread_name_prefix='oaio-front')


class _CsrfFailed(ApiError):
    status, code = 403, 'csrf'


@functools.cache
def middleware_headers() -> list[tuple[bytes, bytes]]:
    """The headers Django's middleware adds to every answer of the API (security, session)."""
    headers = {'Vary': 'Cookie', 'X-Frame-Options': settings.X_FRAME_OPTIONS,
               'Referrer-Policy': settings.SECURE_REFERRER_POLICY,
               'Cross-Origin-Opener-Policy': settings.SECURE_CROSS_ORIGIN_OPENER_POLICY}
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers['X-Content-Type-Options'] = 'nosniff'
    return [(name.lower().encode(), value.encode('latin-1')) for name, value in headers.items() if value]


def keep_connection() -> None:
    """Reuse this thread's database connection, unless it stopped working (a restarted PostgreSQL)."""
    if connection.connection is not None and not connection.is_usable():
        connection.close()


def _no_view(request):      # CsrfViewMiddleware wants a get_response; it is never called here
    raise AssertionError('not called')


def authenticated_request(scope, csrf: bool) -> ASGIRequest:
    """A body-less Django request of ``scope`` whose user is logged in, checked as Django's
    middleware and views.endpoint would: host, then (with ``csrf``) the CSRF token, then the
    session, then the X-OAIO headers. Raises the error Django would answer with. Runs in a thread."""
    keep_connection()
    try:
        request = ASGIRequest(scope, io.BytesIO())
        try:
            request.get_host()
        except DisallowedHost:          # Django's CommonMiddleware raises it, and handler400 answers
            raise BadRequest('bad request') from None
        if csrf:
            # the body is not read here: an API request carries its token in the header, never in a
            # form (without this, the middleware would parse the unread body as one)
            request.POST = QueryDict()
            middleware = CsrfViewMiddleware(_no_view)
            middleware.process_request(request)
            refusal = middleware.process_view(request, views.files, (), {})
            if refusal is not None:
                raise _CsrfFailed(json.loads(refusal.content)['detail'])     # errors.csrf_failure's text
        store = import_module(settings.SESSION_ENGINE).SessionStore
        request.session = store(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
        request.user = get_user(request)
        if not request.user.is_authenticated:
            raise NotAuthenticated('log in first (POST login/)')
        views.context_of(request)               # malformed X-OAIO headers → 400
        return request
    except DatabaseError:
        connection.close()                      # the next request opens a new one
        raise


async def send_error(send, exc: Exception, scope) -> None:
    """Answer ``exc`` as Django would (JSON error body, Retry-After, middleware headers)."""
    answer = answer_for(exc, scope['method'], scope['path'])
    answer['Content-Length'] = str(len(answer.content))
    headers = [(name.lower().encode(), value.encode('latin-1')) for name, value in answer.items()]
    await send({'type': 'http.response.start', 'status': answer.status_code,
                'headers': headers + middleware_headers()})
    await send({'type': 'http.response.body', 'body': answer.content})


async def send_json(send, status: int, body: dict, extra_headers: tuple = ()) -> None:
    """Answer ``body`` as JSON with the middleware headers and ``Cache-Control: no-store``."""
    payload = json.dumps(body).encode()
    await send({'type': 'http.response.start', 'status': status, 'headers': [
        (b'content-type', b'application/json'), (b'content-length', str(len(payload)).encode()),
        (b'cache-control', b'no-store'), *extra_headers, *middleware_headers()]})
    await send({'type': 'http.response.body', 'body': payload})


async def read_body(receive, limit: int) -> bytes:
    """A small request body, read whole; TooLarge beyond ``limit`` bytes (also when undeclared)."""
    pieces, size = [], 0
    while True:
        message = await receive()
        if message['type'] == 'http.disconnect':
            raise BadRequest('the client went away before the end of its request')
        piece = message.get('body', b'')
        size += len(piece)
        if size > limit:
            raise TooLarge(f'request body is larger than the limit of {limit} bytes')
        pieces.append(piece)
        if not message.get('more_body', False):
            return b''.join(pieces)


async def watch_disconnect(receive) -> None:
    """Return when the client has gone (call it only once the request's body has been read)."""
    while (await receive())['type'] != 'http.disconnect':
        pass


def content_length(scope) -> int | None:
    """The request's declared body size; None when it is not declared (chunked transfer)."""
    for name, value in scope['headers']:
        if name == b'content-length':
            try:
                length = int(value)
            except ValueError:
                raise BadRequest('Content-Length is not a number') from None
            if length < 0:
                raise BadRequest('Content-Length is negative')
            return length
    return None


async def run(function, *args):
    """Run ``function(*args)`` in one of the front door's threads."""
    return await asyncio.get_running_loop().run_in_executor(executor, function, *args)


def _body_limit_error() -> TooLarge:
    return TooLarge(f'request body is larger than the limit of {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes '
                    'of this server')


async def guarded(app, scope, receive, send) -> None:
    """Pass an HTTP request to Django (``app``) only as far as its body may be read.

    Every body Django reads is capped at DATA_UPLOAD_MAX_MEMORY_SIZE (JSON and forms; files go
    through uploads.py): a larger Content-Length is refused before a byte is read, and an
    undeclared (chunked) body is cut off at the limit. A body larger than OPEN_BODY_BYTES, or of
    unknown size, is read only for a logged-in caller (for the API also with a valid CSRF token,
    which it sends in a header; a form of the admin carries its token in the body, which Django's
    middleware checks after reading it): strangers can make the server hold no more than that per
    connection.
    """
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        length = content_length(scope)
        if length is not None and length > limit:
            raise _body_limit_error()
        chunked = length is None and any(name == b'transfer-encoding' for name, _ in scope['headers'])
        if chunked or (length or 0) > OPEN_BODY_BYTES:
            await run(authenticated_request, scope, scope['path'].startswith('/api/'))
    except Exception as exc:  # noqa: BLE001 — every refusal is answered as Django would answer it
        await send_error(send, exc, scope)
        return
    received = 0
    cut_off = started = False

    async def counted_receive():
        nonlocal received, cut_off
        if cut_off:
            return {'type': 'http.disconnect'}
        message = await receive()
        received += len(message.get('body', b''))
        if received > limit:
            cut_off = True              # Django's read_body gives up on a disconnect, answering nothing
            return {'type': 'http.disconnect'}
        return message

    async def tracked_send(message):
        nonlocal started
        started = True
        await send(message)

    await app(scope, counted_receive, tracked_send)
    if cut_off and not started:
        await send_error(send, _body_limit_error(), scope)
