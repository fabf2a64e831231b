"""``GET api/changes/?since=CURSOR&wait=SECONDS`` as a plain ASGI app, beside Django.

Django runs every request in a thread of its own for the request's whole duration, so a
long poll served by a Django view would hold an OS thread while it waits. This app authenticates
with Django's session (in a shared, bounded thread pool), runs the feed query there too, and waits
on the process's :data:`~oaio.server.notify.watcher` without any thread.
"""
import asyncio
import contextlib
import json
import logging
import math
from importlib import import_module
from types import SimpleNamespace
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.db import close_old_connections
from django.http.cookie import parse_cookie

from .errors import ApiError, InvalidInput, NotAuthenticated, MethodNotAllowed
from .feed import changes_for, parse_cursor
from .notify import watcher

PATH = '/api/changes/'
log = logging.getLogger(__name__)


def _session_user(cookie_header: str):
    """The authenticated user of the session cookie, or None."""
    close_old_connections()
    session_key = parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))
    return user if user.is_authenticated and user.is_active else None


def _parse_wait(values: list[str]) -> float:
    if not values:
        return 0.0
    try:
        wait = float(values[-1])
    except ValueError:
        raise InvalidInput(f'wait must be a number of seconds, got {values[-1][:20]!r}') from None
    if not math.isfinite(wait) or wait < 0:
        raise InvalidInput('wait must be a non-negative number of seconds')
    return min(wait, settings.OAIO_FEED_MAX_WAIT)


async def _send_json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({'type': 'http.response.start', 'status': status, 'headers': [
        (b'content-type', b'application/json'), (b'content-length', str(len(payload)).encode()),
        (b'cache-control', b'no-store')]})
    await send({'type': 'http.response.body', 'body': payload})


async def _wait_for_change(event: asyncio.Event, timeout: float, disconnected: asyncio.Task) -> None:
    waiting = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiting, disconnected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()


async def _watch_disconnect(receive) -> None:
    while (await receive())['type'] != 'http.disconnect':
        pass


async def _answer(scope, disconnected: asyncio.Task) -> dict:
    if scope['method'] != 'GET':
        raise MethodNotAllowed('changes/ answers GET only')
    headers = dict(scope['headers'])
    user = await sync_to_async(_session_user, thread_sensitive=False)(headers.get(b'cookie', b'').decode('latin-1'))
    if user is None:
        raise NotAuthenticated('log in first (POST login/)')
    query = parse_qs(scope['query_string'].decode('latin-1'))
    cursor = parse_cursor(query.get('since', [''])[-1])
    wait = _parse_wait(query.get('wait', []))
    query_changes = sync_to_async(changes_for, thread_sensitive=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    async with watcher.listening(user.pk) as changed:
        while True:
            changed.clear()
            answer = await query_changes(user, cursor)
            remaining = deadline - loop.time()
            if answer['snapshot'] or answer['changes'] or remaining <= 0 or disconnected.done() or watcher.closing:
                return answer
            await _wait_for_change(changed, remaining, disconnected)


async def changes_app(scope, receive, send) -> None:
    """ASGI app of the change feed."""
    disconnected = asyncio.ensure_future(_watch_disconnect(receive))
    try:
        answer = await _answer(scope, disconnected)
    except ApiError as exc:
        await _send_json(send, exc.status, {'error': exc.code, 'detail': exc.detail, **exc.extra})
        return
    except Exception:
        log.exception('unexpected error in the change feed')
        await _send_json(send, 500, {'error': 'server_error', 'detail': 'unexpected server error; see the server log'})
        return
    finally:
        disconnected.cancel()
    with contextlib.suppress(OSError):
        await _send_json(send, 200, answer)
