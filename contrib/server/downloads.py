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

from django.core.files import File
from django.core.files.storage import storages
from django.db import DatabaseError, connection
from django.urls import Resolver404, resolve

from oaio import protocol as p

from . import front, objects, views
from .blobs import blob_name

PREFIX = '/api/files/'


def file_address(scope) -> dict | None:
    """The URL's ``oaio_id``, ``stamp`` and ``path`` when ``scope`` is a request of ``files/…``, else
    None (then Django answers: URLs its resolver does not route to views.files)."""
    if scope['type'] != 'http' or not scope['path'].startswith(PREFIX):
        return None
    try:
        match = resolve(scope['path'])
    except Resolver404:
        return None
    return match.kwargs if match.func is views.files else None


def _open(scope, address: dict) -> tuple[dict, File, bytes]:
    """Check the request as Django and views.files would; return the file's manifest entry, its
    first piece (blob or chunk) opened, and that piece's first MiB (most files fit in one: no
    second thread hop)."""
    request = front.authenticated_request(scope, csrf=False)
    try:
        oaio_id, stamp, path = views.file_address(address['oaio_id'], address['stamp'], address['path'])
        entry = objects.file_entry(request.user, oaio_id, stamp, path)
    except DatabaseError:
        connection.close()                      # the next request opens a new one
        raise
    first, size = objects.contents(entry)[0]
    content = storages['blobs'].open(blob_name(first), 'rb')
    try:
        return entry, content, _read(content, min(p.CHUNK_BYTES, size), first)
    except BaseException:
        content.close()
        raise


def _read(content: File, size: int, name: str) -> bytes:
    piece = content.read(size)
    if len(piece) != size:
        raise OSError(f'stored content {name} is shorter than its size')
    return piece


async def _stream(send, entry: dict, content: File, chunk: bytes, disconnected: asyncio.Future) -> None:
    """Send the file: its pieces (one blob, or its chunks in order) a MiB at a time."""
    await send({'type': 'http.response.start', 'status': 200, 'headers': [
        (b'content-type', b'application/octet-stream'), (b'content-length', str(entry['size']).encode()),
        (p.HEADER_SHA256.lower().encode(), entry['sha256'].encode()), *front.middleware_headers()]})
    pieces = objects.contents(entry)
    for index, (name, size) in enumerate(pieces):
        if index:
            content = await front.run(storages['blobs'].open, blob_name(name), 'rb')
            chunk = await front.run(_read, content, min(p.CHUNK_BYTES, size), name)
        try:
            left = size - len(chunk)
            while True:
                last = left <= 0 and index == len(pieces) - 1
                await send({'type': 'http.response.body', 'body': chunk, 'more_body': not last})
                if left <= 0 or disconnected.done():
                    break
                chunk = await front.run(_read, content, min(p.CHUNK_BYTES, left), name)
                left -= len(chunk)
        finally:
            content.close()
        if disconnected.done():
            return


async def download_app(scope, receive, send, address: dict) -> None:
    """ASGI app of one file download (``address`` from :func:`file_address`)."""
    try:
        entry, content, chunk = await front.run(_open, scope, address)
    except Exception as exc:
        await front.send_error(send, exc, scope)
        return
    disconnected = asyncio.ensure_future(front.watch_disconnect(receive))
    try:
        await _stream(send, entry, content, chunk, disconnected)
    finally:
        disconnected.cancel()
        content.close()                         # closing twice is harmless
