"""``GET api/changes/?since=CURSOR&wait=SECONDS`` as a plain ASGI app, beside Django.

Django runs every request in a thread of its own for the request's whole duration, so a
long poll served by a Django view would hold an OS thread while it waits. This app authenticates
as every front door does (front.authenticated_request, in its bounded thread pool), runs the feed
query in a worker thread, and waits on the process's :data:`~oaio.server.notify.watcher` without
any thread.
"""
import asyncio
import contextlib
import json
import logging
import math
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings

from . import front
from .errors import InvalidInput, MethodNotAllowed
from .feed import changes_for, parse_cursor
from .notify import watcher

PATH = '/api/changes/'
log = logging.getLogger(__name__)


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


async def _send_json(send, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({'type': 'http.response.start', 'status': 200, 'headers': [
        (b'content-type', b'application/json'), (b'content-length', str(len(payload)).encode()),
        (b'cache-control', b'no-store')]})
    await send({'type': 'http.response.body', 'body': payload})


async def _wait_for_change(event: asyncio.Event, timeout: float, disconnected: asyncio.Task) -> None:
    waiting = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiting, disconnected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()


async def _answer(scope, disconnected: asyncio.Task) -> dict:
    if scope['method'] != 'GET':
        raise MethodNotAllowed('changes/ answers GET only')
    user = (await front.run(front.authenticated_request, scope, False)).user
    query = parse_qs(scope['query_string'].decode('latin-1'))
    cursor = parse_cursor(query.get('since', [''])[-1])
    wait = _parse_wait(query.get('wait', []))
    files = query.get('files', [''])[-1]
    if files not in ('', 'full', 'delta'):
        raise InvalidInput(f'files must be full or delta, got {files[:20]!r}')
    query_changes = sync_to_async(changes_for, thread_sensitive=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    async with watcher.listening(user.pk) as changed:
        while True:
            changed.clear()
            answer = await query_changes(user, cursor, files == 'delta')
            remaining = deadline - loop.time()
            if answer['snapshot'] or answer['changes'] or remaining <= 0 or disconnected.done() or watcher.closing:
                return answer
            await _wait_for_change(changed, remaining, disconnected)


async def changes_app(scope, receive, send) -> None:
    """ASGI app of the change feed."""
    disconnected = asyncio.ensure_future(front.watch_disconnect(receive))
    try:
        answer = await _answer(scope, disconnected)
    except Exception as exc:  # noqa: BLE001 — answered as Django would (a 500 is logged there)
        with contextlib.suppress(OSError):
            await front.send_error(send, exc, scope)
        return
    finally:
        disconnected.cancel()
    with contextlib.suppress(OSError):
        await _send_json(send, answer)
