"""``PUT api/files/<oaio_id>/<stamp>/<path>`` as a plain ASGI app beside Django.

Django reads a request's whole body into a temporary file before anything looks at the request,
so through Django an anonymous PUT held disk space for as long as its connection stayed open, and
an authenticated one cost twice the file (Django's copy, then the blob spool). Here the caller is
checked first — host, CSRF token, session, X-OAIO headers, address, write right, declared size,
the user's uploads in progress — and only then is the body read, once, straight into the blob
spool, hashed as it arrives (in threads, never on the event loop), and stored.
"""
import contextlib
import logging
from collections import Counter

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse

from oaio import protocol as p

from . import blobs, front, objects, views
from .errors import TooLarge, TooManyRequests

log = logging.getLogger(__name__)
FLUSH_BYTES = 1024 * 1024       # body bytes gathered before one hop to a thread writes and hashes them

_in_progress: Counter = Counter()  # user id → uploads of this process now reading a body


def in_progress() -> int:
    """Uploads of this process now reading a body, of all users (call it in the event loop)."""
    return sum(_in_progress.values())


def _admit(scope, address: dict) -> tuple:
    """Everything checked before the body is read; returns (user, oaio_id, stamp, path, sha256)."""
    request = front.authenticated_request(scope, csrf=True)
    oaio_id, stamp, path = views.file_address(address['oaio_id'], address['stamp'], address['path'])
    expected = request.headers.get(p.HEADER_SHA256, '')
    if expected:
        p.check_sha256(expected)
    length = front.content_length(scope)
    if length is not None and length > settings.OAIO_MAX_FILE_BYTES:
        raise TooLarge(f'file is larger than the limit of {settings.OAIO_MAX_FILE_BYTES} bytes')
    try:
        objects.check_stage(request.user, oaio_id, stamp)
    except DatabaseError:
        connection.close()
        raise
    return request.user, oaio_id, stamp, path, expected


def _store(user, oaio_id: str, stamp: str, path: str, spool: blobs.Spool, expected: str) -> dict:
    front.keep_connection()
    spool.finish()
    blob = blobs.keep(spool, expected)
    objects.check_stage(user, oaio_id, stamp)       # again: a version may have been stored meanwhile
    objects.stage_file(user, oaio_id, stamp, path, blob)
    return {'sha256': blob.sha256, 'size': blob.size}


async def receive_into(receive, write) -> bool:
    """Read the body, handing it to ``write`` (in a thread) a MiB or more at a time; False when the
    client went away before its end."""
    pending: list[bytes] = []
    gathered = 0
    while True:
        message = await receive()
        if message['type'] == 'http.disconnect':
            return False
        chunk = message.get('body', b'')
        if chunk:
            pending.append(chunk)
            gathered += len(chunk)
        more = message.get('more_body', False)
        if pending and (gathered >= FLUSH_BYTES or not more):
            await front.run(write, b''.join(pending))
            pending, gathered = [], 0
        if not more:
            return True


def admit(user) -> None:
    """Count one more body being read for ``user`` (call in the event loop; :func:`release` after);
    429 beyond OAIO_MAX_UPLOADS_PER_USER of them, file uploads and packs together."""
    if _in_progress[user.pk] >= settings.OAIO_MAX_UPLOADS_PER_USER:
        log.warning('upload by %s refused: %d uploads of this user in progress', user.username,
                    _in_progress[user.pk])
        raise TooManyRequests(f'{_in_progress[user.pk]} uploads of yours are in progress; try again shortly',
                              retry_after=1)
    _in_progress[user.pk] += 1


def release(user) -> None:
    _in_progress[user.pk] -= 1
    if not _in_progress[user.pk]:
        del _in_progress[user.pk]


async def upload_app(scope, receive, send, address: dict) -> None:
    """ASGI app of one file upload (``address``: the URL's oaio_id, stamp and path)."""
    try:
        user, oaio_id, stamp, path, expected = await front.run(_admit, scope, address)
        admit(user)
    except Exception as exc:  # noqa: BLE001 — every refusal is answered as Django would answer it
        await front.send_error(send, exc, scope)
        return
    spool = None
    try:
        spool = await front.run(blobs.Spool, settings.OAIO_MAX_FILE_BYTES)
        if not await receive_into(receive, spool.write):
            log.info('upload of %r by %s cut off by the client', path, user.username)
            return
        answer = await front.run(_store, user, oaio_id, stamp, path, spool, expected)
    except Exception as exc:  # noqa: BLE001 — answered as Django would, after the spool is gone
        failure = exc
    else:
        failure = None
    finally:
        release(user)
        if spool is not None:
            await front.run(spool.discard)
    if failure is not None:
        await front.send_error(send, failure, scope)
        return
    response = JsonResponse(answer, status=201)
    headers = [(name.lower().encode(), value.encode('latin-1')) for name, value in response.items()]
    with contextlib.suppress(OSError):
        await send({'type': 'http.response.start', 'status': 201, 'headers': [
            *headers, (b'content-length', str(len(response.content)).encode()), *front.middleware_headers()]})
        await send({'type': 'http.response.body', 'body': response.content})

