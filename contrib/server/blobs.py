"""Content-addressed blob store: every file content is stored once, under its sha256.

The storage is Django's storage alias ``blobs`` (local disk by default, any Django storage such
as an S3-compatible one in production). Content is streamed once, as it arrives, into a temporary
file in the data directory while it is hashed (uploads.py), so no file is ever held in memory whole.
"""
import hashlib
import os
import tempfile

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages
from django.db import IntegrityError, transaction

from oaio.protocol.durable import syncfs

from .errors import InvalidInput, TooLarge
from .models import Blob


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


class Spool:
    """A temporary file in the data directory that content is written into while it is hashed and
    counted; :meth:`finish` makes it durable. ``max_bytes`` is enforced as the content arrives."""

    def __init__(self, max_bytes: int):
        settings.TMP_DIR.mkdir(parents=True, exist_ok=True)
        fd, self.path = tempfile.mkstemp(dir=settings.TMP_DIR, prefix='blob-')
        self.file = os.fdopen(fd, 'wb')
        self.digest, self.size, self.max_bytes = hashlib.sha256(), 0, max_bytes

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise TooLarge(f'file is larger than the limit of {self.max_bytes} bytes')
        self.digest.update(chunk)
        self.file.write(chunk)

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()

    def discard(self) -> None:
        self.file.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def store_many(files: dict[str, str]) -> None:
    """Move finished temporary files ``{storage name: path}`` into the blob storage, durably.

    On the local default (a FileSystemStorage) they are renamed into place and made durable with one
    syncfs(2) for all of them; any other storage (e.g. S3) gets one save per file, durable when it
    returns. The temporary files are consumed."""
    storage = storages['blobs']
    if isinstance(storage, FileSystemStorage):
        for name, path in files.items():
            target = storage.path(name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
        if files:
            syncfs(storage.location)
        return
    for name, path in files.items():
        try:
            with open(path, 'rb') as content:
                storage.save(name, _TemporaryFile(content, name=path))
        finally:
            if os.path.exists(path):
                os.unlink(path)


def keep(spool: Spool, expected_sha256: str = '') -> Blob:
    """Store a finished spool's content (verified against ``expected_sha256`` if given) unless it is
    stored already, and return its Blob; the spool is consumed either way."""
    sha256 = spool.digest.hexdigest()
    try:
        if expected_sha256 and sha256 != expected_sha256:
            raise InvalidInput(f'content does not match its declared sha256 {expected_sha256}', sha256=sha256)
        blob = Blob.objects.filter(sha256=sha256).first()
        if blob is None:
            with open(spool.path, 'rb') as content:
                storages['blobs'].save(blob_name(sha256), _TemporaryFile(content, name=spool.path))
            blob = _record_blob(sha256, spool.size)
        return blob
    finally:
        spool.discard()


def _record_blob(sha256: str, size: int) -> Blob:
    try:
        with transaction.atomic():
            return Blob.objects.create(sha256=sha256, size=size)
    except IntegrityError:          # stored concurrently by another upload of the same content
        return Blob.objects.get(sha256=sha256)
