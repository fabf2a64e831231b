"""``POST api/chunks/`` (a pack of chunks in) and ``POST api/chunks/fetch/`` (a pack of chunks out),
as plain ASGI apps beside Django, like uploads.py and downloads.py.

A pack is a stream of chunks, each ``<sha256> <size>\\n`` and its bytes (oaio.protocol.PackParser).
One request carries thousands of small files' content, or several MiB of a big file's chunks: a
shared folder of 10,000 small files costs a few requests, not 10,000, and their content is made
durable with one sync of the storage's filesystem per pack, not an fsync per file.

Every chunk is hashed as it arrives (in threads, never on the event loop) and refused with the
whole pack if its bytes do not match its declared sha256; nothing of a refused pack is recorded.
A chunk stored already is still read and verified: sending the bytes is what proves possession
(models.BlobHolder), so the sender may then name it in a version.
"""
import asyncio
import hashlib
import json
import logging
import os
import tempfile

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.db import transaction

from oaio import protocol as p

from . import blobs, front, objects, uploads
from .errors import InvalidInput, NotFound, TooLarge, Unavailable
from .models import Blob, BlobHolder

log = logging.getLogger(__name__)
UPLOAD_PATH = '/api/chunks/'
FETCH_PATH = '/api/chunks/fetch/'
FETCH_BODY_BYTES = 1024 * 1024      # a fetch request's JSON: MAX_MISSING_HASHES hashes fit easily


class PackWriter:
    """Receives one pack upload of ``user``: every chunk hashed and written to a temporary file as
    it arrives; :meth:`finish` stores the new ones durably and records them, all or nothing."""

    def __init__(self, user):
        self.user = user
        self.parser = p.PackParser()
        self.received: dict[str, int] = {}      # sha256 → size, every chunk of the pack
        self.new: dict[str, str] = {}           # sha256 → temporary file, chunks not stored before
        self._file = None
        self._digest = None
        self._expected = ''
        self._path = ''
        self.size = 0
        settings.TMP_DIR.mkdir(parents=True, exist_ok=True)

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > p.MAX_PACK_BYTES:
            raise TooLarge(f'a pack is larger than the limit of {p.MAX_PACK_BYTES} bytes')
        for event in self.parser.feed(data):
            if event[0] == 'start':
                self._expected = event[1]
                self._digest = hashlib.sha256()
                fd, self._path = tempfile.mkstemp(dir=settings.TMP_DIR, prefix='chunk-')
                self._file = os.fdopen(fd, 'wb')
            elif event[0] == 'data':
                self._digest.update(event[1])
                self._file.write(event[1])
            else:
                self._end_chunk(event[1])

    def _end_chunk(self, sha256: str) -> None:
        self._file.close()
        self._file = None
        actual = self._digest.hexdigest()
        if actual != sha256:
            os.unlink(self._path)
            log.warning('pack of %s refused: a chunk declared as %s hashes to %s (forged or damaged)',
                        self.user.username, sha256, actual)
            raise InvalidInput(f'chunk {sha256} does not match its bytes (their sha256 is {actual}); '
                               'nothing of this pack was stored', sha256=actual)
        size = os.path.getsize(self._path)
        if sha256 in self.received:
            os.unlink(self._path)
            return
        self.received[sha256] = size
        self.new[sha256] = self._path

    def finish(self) -> dict:
        """Store the chunks not stored yet, make them durable with one sync, then record them and
        the sender's possession in one transaction.

        Garbage collection (gc.py) may delete a chunk between the look for stored chunks and that
        transaction. So the temporary files of chunks found stored are kept until the commit, and
        the transaction — which holds the content lock, so no collection runs during it — looks
        again: a chunk whose row is gone is stored again from its temporary file, and a chunk this
        pack stored whose file is gone (swept as a file without a row) fails the pack with a 503,
        which the client retries. No row is ever recorded without its file."""
        self.parser.close()
        front.keep_connection()
        found = set()
        for batch in objects.batches(sorted(self.new)):
            found.update(Blob.objects.filter(sha256__in=batch).values_list('sha256', flat=True))
        placed = {sha256: path for sha256, path in self.new.items() if sha256 not in found}
        blobs.store_many({blobs.blob_name(sha256): path for sha256, path in placed.items()})
        self.new = {sha256: path for sha256, path in self.new.items() if sha256 in found}
        storage = storages['blobs']
        with transaction.atomic():
            objects.content_lock()
            recorded = set()
            for batch in objects.batches(sorted(self.received)):
                recorded.update(Blob.objects.filter(sha256__in=batch).values_list('sha256', flat=True))
            collected = {sha256: self.new.pop(sha256) for sha256 in found if sha256 not in recorded}
            if collected:
                log.info('pack of %s: %d chunks were collected meanwhile; storing them again',
                         self.user.username, len(collected))
                blobs.store_many({blobs.blob_name(sha256): path for sha256, path in collected.items()})
            if isinstance(storage, FileSystemStorage):     # only a local directory is swept (gc.py)
                lost = [sha256 for sha256 in placed if sha256 not in recorded
                        and not os.path.exists(storage.path(blobs.blob_name(sha256)))]
                if lost:
                    log.warning('pack of %s refused: %d of its new chunks were removed by garbage collection '
                                'before they were recorded', self.user.username, len(lost))
                    raise Unavailable('chunks of this pack were collected before they were recorded; send it again')
            for batch in objects.batches(sorted(self.received)):
                Blob.objects.bulk_create([Blob(sha256=sha256, size=self.received[sha256]) for sha256 in batch
                                          if sha256 not in recorded], ignore_conflicts=True)
                BlobHolder.objects.bulk_create([BlobHolder(user=self.user, blob_id=sha256) for sha256 in batch],
                                               ignore_conflicts=True)
        return {'received': len(self.received), 'stored': len(placed) + len(collected)}

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            os.unlink(self._path)
            self._file = None
        for path in self.new.values():
            if os.path.exists(path):
                os.unlink(path)
        self.new = {}


def _admit_upload(scope):
    request = front.authenticated_request(scope, csrf=True)
    length = front.content_length(scope)
    if length is not None and length > p.MAX_PACK_BYTES:
        raise TooLarge(f'a pack is larger than the limit of {p.MAX_PACK_BYTES} bytes')
    return request.user


async def upload_app(scope, receive, send) -> None:
    """ASGI app of one pack upload: checked first (as uploads.py), then read once, as it arrives."""
    if scope['method'] != 'POST':
        await front.send_json(send, 405, {'error': 'method_not_allowed', 'detail': 'POST a pack here'})
        return
    try:
        user = await front.run(_admit_upload, scope)
        uploads.admit(user)
    except Exception as exc:  # noqa: BLE001 — every refusal is answered as Django would answer it
        await front.send_error(send, exc, scope)
        return
    writer = None
    try:
        writer = await front.run(PackWriter, user)
        if not await uploads.receive_into(receive, writer.feed):
            log.info('pack upload of %s cut off by the client', user.username)
            return
        answer = await front.run(writer.finish)
    except Exception as exc:  # noqa: BLE001 — answered as Django would, after the temporary files are gone
        failure = exc
    else:
        failure = None
    finally:
        uploads.release(user)
        if writer is not None:
            await front.run(writer.discard)
    if failure is not None:
        await front.send_error(send, failure, scope)
        return
    await front.send_json(send, 200, answer)


def _admit_fetch(scope, body: bytes) -> tuple[list[tuple[str, int]], object]:
    """The chunks asked for, in order, with their sizes: each must be the caller's to read."""
    request = front.authenticated_request(scope, csrf=True)
    try:
        hashes = json.loads(body)['sha256']
    except (ValueError, KeyError, TypeError):
        raise InvalidInput('send {"sha256": [chunk hashes]}') from None
    if not isinstance(hashes, list) or not 0 < len(hashes) <= p.MAX_MISSING_HASHES:
        raise InvalidInput(f'"sha256" must list 1 to {p.MAX_MISSING_HASHES} chunk hashes')
    for digest in hashes:
        p.check_sha256(digest)
    readable = objects.possessed(request.user, hashes)
    sizes = {}
    for batch in objects.batches(sorted(readable)):
        sizes.update(Blob.objects.filter(sha256__in=batch).values_list('sha256', 'size'))
    unknown = [digest for digest in hashes if digest not in sizes]
    if unknown:
        raise NotFound(f'{len(unknown)} of these chunks are not yours to read or not stored', missing=unknown[:100])
    return [(digest, sizes[digest]) for digest in hashes], request.user


def _read_piece(content, size: int) -> bytes:
    piece = content.read(size)
    if len(piece) != size:
        raise OSError('a stored chunk is shorter than its size')
    return piece


async def fetch_app(scope, receive, send) -> None:
    """ASGI app of one chunk fetch: the chunks asked for, as one pack, in the order asked, streamed
    from the storage a MiB at a time."""
    if scope['method'] != 'POST':
        await front.send_json(send, 405, {'error': 'method_not_allowed', 'detail': 'POST {"sha256": [...]} here'})
        return
    try:
        length = front.content_length(scope)
        if length is not None and length > FETCH_BODY_BYTES:
            raise TooLarge(f'a fetch request is larger than {FETCH_BODY_BYTES} bytes')
        body = await front.read_body(receive, FETCH_BODY_BYTES)
        chunks, user = await front.run(_admit_fetch, scope, body)
    except Exception as exc:  # noqa: BLE001
        await front.send_error(send, exc, scope)
        return
    total = sum(len(p.pack_header(digest, size)) + size for digest, size in chunks)
    disconnected = asyncio.ensure_future(front.watch_disconnect(receive))
    storage = storages['blobs']
    try:
        await send({'type': 'http.response.start', 'status': 200, 'headers': [
            (b'content-type', b'application/x-oaio-pack'), (b'content-length', str(total).encode()),
            (b'cache-control', b'no-store'), *front.middleware_headers()]})
        for digest, size in chunks:
            header = p.pack_header(digest, size)
            if not size:                            # the empty file's content: its header alone
                await send({'type': 'http.response.body', 'body': header, 'more_body': True})
                continue
            content = await front.run(storage.open, blobs.blob_name(digest), 'rb')
            try:
                left = size
                while left and not disconnected.done():
                    piece = await front.run(_read_piece, content, min(p.CHUNK_BYTES, left))
                    left -= len(piece)
                    await send({'type': 'http.response.body', 'body': header + piece, 'more_body': True})
                    header = b''
            finally:
                content.close()
            if disconnected.done():
                return
        await send({'type': 'http.response.body', 'body': b'', 'more_body': False})
    except OSError:
        log.exception('chunk fetch of %s failed while streaming', user.username)
        raise
    finally:
        disconnected.cancel()


