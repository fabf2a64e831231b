"""Content-addressed blob store: every file content is stored once, under its sha256.

The storage is Django's storage alias ``blobs`` (local disk by default, any Django storage such
as an S3-compatible one in production). Content is streamed through a temporary file in the data
directory while it is hashed, so no file is ever held in memory whole.
"""
import asyncio
import hashlib
import os
import tempfile

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages
from django.db import IntegrityError, transaction

from oaio.client import protocol as p

from .errors import InvalidInput, TooLarge
from .models import Blob

CHUNK_BYTES = 1024 * 1024


class DurableFileSystemStorage(FileSystemStorage):
    """Local blob storage whose saves survive a crash: the content arrives by rename of an fsynced
    temporary file, and the directory entry is fsynced too."""

    def _save(self, name, content):
        name = super()._save(name, content)
        directory = os.open(os.path.dirname(self.path(name)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return name


class _TemporaryFile(File):
    """A finished temporary file; storages move it into place instead of copying it."""

    def temporary_file_path(self) -> str:
        return self.name


def blob_name(sha256: str) -> str:
    """Storage name of a blob: fanned out in two directory levels."""
    return f'{sha256[:2]}/{sha256[2:4]}/{sha256}'


def _spool(stream, max_bytes: int) -> tuple[str, str, int]:
    """Copy ``stream`` into a fsynced temporary file; return its path, sha256 and size."""
    settings.TMP_DIR.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=settings.TMP_DIR, prefix='blob-')
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, 'wb') as out:
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f'file is larger than the limit of {max_bytes} bytes')
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(path)
        raise
    return path, digest.hexdigest(), size


def store(stream, expected_sha256: str = '') -> Blob:
    """Store the content of ``stream`` (verified against ``expected_sha256`` if given); return its Blob."""
    if expected_sha256:
        p.check_sha256(expected_sha256)
    path, sha256, size = _spool(stream, settings.OAIO_MAX_FILE_BYTES)
    try:
        if expected_sha256 and sha256 != expected_sha256:
            raise InvalidInput(f'content does not match its declared sha256 {expected_sha256}', sha256=sha256)
        blob = Blob.objects.filter(sha256=sha256).first()
        if blob is None:
            with open(path, 'rb') as content:
                storages['blobs'].save(blob_name(sha256), _TemporaryFile(content, name=path))
            blob = _record_blob(sha256, size)
        return blob
    finally:
        if os.path.exists(path):
            os.unlink(path)


def _record_blob(sha256: str, size: int) -> Blob:
    try:
        with transaction.atomic():
            return Blob.objects.create(sha256=sha256, size=size)
    except IntegrityError:          # stored concurrently by another upload of the same content
        return Blob.objects.get(sha256=sha256)


def missing(hashes: list[str]) -> list[str]:
    """The hashes of ``hashes`` whose content this server does not have."""
    present = set(Blob.objects.filter(sha256__in=hashes).values_list('sha256', flat=True))
    return [digest for digest in hashes if digest not in present]


async def iter_content(sha256: str):
    """Stream a blob's content in chunks, reading in worker threads (no thread held in between)."""
    content = await asyncio.to_thread(storages['blobs'].open, blob_name(sha256), 'rb')
    try:
        while chunk := await asyncio.to_thread(content.read, CHUNK_BYTES):
            yield chunk
    finally:
        content.close()
