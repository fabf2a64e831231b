"""``GET /healthz``: whether this server process can serve — its database answers a query and its
blob storage takes a write — as a plain ASGI app in front of Django.

In front of Django, not a view: a load balancer's probe needs no session, cookie or CSRF token,
and it may name the server by its address, which ``OAIO_ALLOWED_HOSTS`` need not list. So no
middleware runs, and the checks take one hop to the front door's threads (which keep their
database connections). Anyone may ask; the answer says only which check failed, the log says why.
"""
import json
import logging
import secrets

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import DatabaseError, connection

from . import front
from .errors import MethodNotAllowed

PATH = '/healthz'
PROBE_PREFIX = 'healthz/'       # blob names are fanned out under two hex digits: no blob is here
log = logging.getLogger(__name__)


def _check_database() -> None:
    front.keep_connection()
    try:
        with connection.cursor() as cursor:
            cursor.execute('SELECT 1')
    except DatabaseError:
        connection.close()                      # the next probe opens a new one
        raise


def _check_storage() -> None:
    """Write and delete a small probe: the storage is there and takes new blobs."""
    blobs = storages['blobs']
    name = blobs.save(f'{PROBE_PREFIX}probe-{secrets.token_hex(8)}', ContentFile(b'oaio health probe'))
    blobs.delete(name)


def check() -> dict[str, str]:
    """``{"database": "ok" | "failing", "storage": …}``; each failure is logged as a warning."""
    results = {}
    for part, probe in (('database', _check_database), ('storage', _check_storage)):
        try:
            probe()
            results[part] = 'ok'
        except Exception as exc:  # noqa: BLE001 — whatever breaks a check, the probe answers 503
            log.warning('health check: the %s is failing: %r', part, exc)
            results[part] = 'failing'
    return results


async def health_app(scope, receive, send) -> None:
    """ASGI app of ``GET /healthz``: 200 when every check passes, else 503; JSON either way."""
    if scope['method'] not in ('GET', 'HEAD'):
        await front.send_error(send, MethodNotAllowed(f'{PATH} answers GET'), scope)
        return
    results = await front.run(check)
    healthy = all(result == 'ok' for result in results.values())
    body = json.dumps({'status': 'ok' if healthy else 'failing', **results}).encode()
    await send({'type': 'http.response.start', 'status': 200 if healthy else 503, 'headers': [
        (b'content-type', b'application/json'), (b'content-length', str(len(body)).encode()),
        (b'cache-control', b'no-store')]})
    await send({'type': 'http.response.body', 'body': body if scope['method'] == 'GET' else b''})
