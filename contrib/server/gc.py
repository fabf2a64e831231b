"""Garbage collection of chunks, and the store's statistics (``oaio-server gc``, ``oaio-server stats``,
and every ``OAIO_GC_INTERVAL_SECONDS`` in ``serve``).

A chunk is kept while a version of some object names it (``ObjectBlob``) or a staged file does
(``StagedFile``). ``BlobHolder`` (proof of possession) keeps nothing alive. An unreferenced chunk is
deleted once its ``Blob`` row is older than the grace (``OAIO_GC_GRACE_SECONDS``, a day): an upload
in flight may just have been told by ``blobs/missing/`` that its user holds the chunk (or have sent
it in a pack) and name it in a version a moment later. A version that names a chunk GC deleted
anyway is refused as naming a missing file, and the client sends the chunk again; a version
never names a chunk without its file.

Order and locks, so that no row ever names a file that is gone:

1. Rows first, in batches, each in a transaction holding the content lock exclusively
   (objects.content_lock: a PostgreSQL advisory lock that register/, upload/ and packs take shared;
   on SQLite every writing transaction runs alone anyway). The DELETE itself re-checks that
   nothing names the chunk.
2. Then the files of the rows deleted, again under the lock: a file is left alone if its row is
   back (stored again meanwhile) or the file changed since the batch began (stored again, the row
   not committed yet). ``storage.delete``: any Django storage.
3. Files without a row (a crash between storing a pack's chunks and committing their rows), older
   than the grace: only in a local directory (a FileSystemStorage), which is walked; listing a
   remote store (S3) means a request per fan-out directory, so there it is skipped, and said so.

Staged files of the original protocol older than ``OAIO_STAGED_DAYS`` are dropped first (uploads
that never became a version, by any user), so their chunks are collected in the same run.

One collection runs at a time: a lock file in the data directory, and on PostgreSQL also a session
advisory lock (several servers on one database).
"""
import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.storage import FileSystemStorage, storages
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from . import blobs, objects
from .models import Blob, BlobHolder, FileRow, OaiObject, ObjectBlob, StagedFile, Version

log = logging.getLogger(__name__)
RUN_LOCK = 0x6f61696f6763         # "oaiogc": PostgreSQL session lock, one collection at a time
CHANGE_SLACK = 0.1                # s: file times come from a coarse clock that lags time.time() a little
_HEX2 = re.compile(r'[0-9a-f]{2}')
_SHA256 = re.compile(r'[0-9a-f]{64}')


@contextlib.contextmanager
def _one_at_a_time(wait: bool):
    """Yield True while this process is the only collector (False: another one runs, and ``wait`` is
    False)."""
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(settings.DATA_DIR / 'gc.lock', 'w') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        if connection.vendor != 'postgresql':
            yield True
            return
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT {"pg_advisory_lock" if wait else "pg_try_advisory_lock"}(%s)', [RUN_LOCK])
            got = cursor.fetchone()[0] is not False
        try:
            yield got
        finally:
            if got:
                with connection.cursor() as cursor:
                    cursor.execute('SELECT pg_advisory_unlock(%s)', [RUN_LOCK])


def _tables():
    return (Blob._meta.db_table, BlobHolder._meta.db_table, ObjectBlob._meta.db_table, StagedFile._meta.db_table)


def _unreferenced_sql(count: int) -> str:
    """WHERE clause: the Blob rows among ``count`` hashes that no object version and no staged file names."""
    blob, _, object_blob, staged = _tables()
    marks = ', '.join(['%s'] * count)
    return (f'{blob}.sha256 IN ({marks}) '
            f'AND NOT EXISTS (SELECT 1 FROM {object_blob} WHERE {object_blob}.blob_id = {blob}.sha256) '
            f'AND NOT EXISTS (SELECT 1 FROM {staged} WHERE {staged}.blob_id = {blob}.sha256)')


def _candidates(cutoff, after: str) -> list[tuple[str, int]]:
    """The next batch of unreferenced chunks whose row is older than ``cutoff``, by hash after ``after``."""
    return list(Blob.objects.filter(stored__lt=cutoff, sha256__gt=after)
                .exclude(sha256__in=ObjectBlob.objects.values('blob_id'))
                .exclude(sha256__in=StagedFile.objects.values('blob_id'))
                .order_by('sha256').values_list('sha256', 'size')[:objects.BATCH])


def _delete_rows(batch: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Delete the rows of ``batch`` that are still unreferenced (with their holders); the deleted ones.
    Runs in the caller's transaction, which holds the content lock exclusively."""
    blob, holder, _, _ = _tables()
    hashes = [digest for digest, _ in batch]
    where = _unreferenced_sql(len(hashes))
    with connection.cursor() as cursor:
        cursor.execute(f'DELETE FROM {holder} WHERE blob_id IN (SELECT sha256 FROM {blob} WHERE {where})', hashes)
        cursor.execute(f'DELETE FROM {blob} WHERE {where}', hashes)
    kept = set(Blob.objects.filter(sha256__in=hashes).values_list('sha256', flat=True))
    return [(digest, size) for digest, size in batch if digest not in kept]


def _changed_since(storage, name: str, since: float) -> bool | None:
    """Whether the stored file ``name`` changed (was written or renamed into place) at or after
    ``since`` (a time.time()); None when it does not exist. True when the storage cannot tell."""
    if isinstance(storage, FileSystemStorage):
        try:
            stat = os.stat(storage.path(name))
        except FileNotFoundError:
            return None
        return max(stat.st_mtime, stat.st_ctime) >= since - CHANGE_SLACK
    try:
        return storage.get_modified_time(name).timestamp() >= since - 60       # a remote store's clock
    except FileNotFoundError:
        return None
    except (NotImplementedError, OSError, ValueError):
        return False        # no way to tell: the row check and the grace protect alone


def _delete_files(gone: list[tuple[str, int]], since: float) -> tuple[int, int]:
    """Delete the files of chunks whose rows were deleted, unless stored again meanwhile; (files, bytes)."""
    storage = storages['blobs']
    files = size = 0
    with transaction.atomic():
        objects.content_lock(exclusive=True)
        back = set(Blob.objects.filter(sha256__in=[digest for digest, _ in gone]).values_list('sha256', flat=True))
        for digest, length in gone:
            name = blobs.blob_name(digest)
            if digest in back or _changed_since(storage, name, since) is not False:
                continue
            storage.delete(name)
            files, size = files + 1, size + length
    return files, size


def _collect_chunks(cutoff, dry_run: bool, result: dict) -> None:
    after = ''
    while True:
        since, before = time.time(), after
        try:
            with transaction.atomic():
                if not dry_run:
                    objects.content_lock(exclusive=True)
                batch = _candidates(cutoff, after)
                if not batch:
                    return
                after = batch[-1][0]
                gone = batch if dry_run else _delete_rows(batch)
        except DatabaseError as exc:    # e.g. PostgreSQL: a staged file named one of them meanwhile
            log.warning('garbage collection: a batch of chunks after %r was left for the next run (%s)',
                        before, exc)
            if after == before:
                return
            continue
        result['chunks'] += len(gone)
        result['bytes'] += sum(size for _, size in gone)
        if gone and not dry_run:
            files, _ = _delete_files(gone, since)
            result['files'] += files


def _collect_staged(dry_run: bool, result: dict) -> None:
    expired = StagedFile.objects.filter(stored__lt=timezone.now() - timedelta(days=settings.OAIO_STAGED_DAYS))
    if dry_run:
        result['staged_files'] = expired.count()
        return
    while ids := list(expired.values_list('pk', flat=True)[:objects.BATCH]):
        with transaction.atomic():
            result['staged_files'] += StagedFile.objects.filter(pk__in=ids).delete()[0]


def _walk(storage: FileSystemStorage, cutoff_ts: float):
    """(storage name, size) of every file in the fan-out directories (``ab/cd/…``) older than ``cutoff_ts``."""
    root = storage.location
    with contextlib.suppress(FileNotFoundError):
        for top in sorted(os.listdir(root)):
            if not _HEX2.fullmatch(top) or not os.path.isdir(os.path.join(root, top)):
                continue        # e.g. healthz/, the health check's probes
            for sub in sorted(os.listdir(os.path.join(root, top))):
                directory = os.path.join(root, top, sub)
                if not _HEX2.fullmatch(sub) or not os.path.isdir(directory):
                    continue
                with os.scandir(directory) as entries:
                    for entry in entries:
                        with contextlib.suppress(FileNotFoundError):
                            stat = entry.stat(follow_symlinks=False)
                            if entry.is_file(follow_symlinks=False) and max(stat.st_mtime, stat.st_ctime) < cutoff_ts:
                                yield f'{top}/{sub}/{entry.name}', stat.st_size


def _recorded(names: list[str]) -> set[str]:
    """Those of ``names`` that are the storage name of a Blob row."""
    digests = {os.path.basename(name): name for name in names
               if _SHA256.fullmatch(os.path.basename(name)) and blobs.blob_name(os.path.basename(name)) == name}
    found = set(Blob.objects.filter(sha256__in=list(digests)).values_list('sha256', flat=True))
    return {digests[digest] for digest in found}


def _collect_orphans(cutoff_ts: float, dry_run: bool, result: dict) -> None:
    storage = storages['blobs']
    if not isinstance(storage, FileSystemStorage):
        result['orphans_note'] = (f'files without a row not looked for: the blob storage ({type(storage).__name__}) '
                                  'is not a local directory, and listing it costs a request per directory')
        return
    pending: list[tuple[str, int]] = []

    def sweep() -> None:
        with transaction.atomic():
            objects.content_lock(exclusive=True)
            recorded = _recorded([name for name, _ in pending])
            for name, size in pending:
                if name in recorded:
                    continue
                if not dry_run:
                    try:
                        stat = os.stat(storage.path(name))
                    except FileNotFoundError:
                        continue
                    if max(stat.st_mtime, stat.st_ctime) >= cutoff_ts:
                        continue        # stored again since the walk
                    storage.delete(name)
                result['orphans'] += 1
                result['orphan_bytes'] += size
        pending.clear()

    for item in _walk(storage, cutoff_ts):
        pending.append(item)
        if len(pending) >= objects.BATCH:
            sweep()
    if pending:
        sweep()


def collect(grace_seconds: int, dry_run: bool = False, wait: bool = True) -> dict:
    """Delete what nothing needs any more (see the module's doc); with ``dry_run`` only count it.

    Returns ``{"chunks", "bytes", "files", "staged_files", "orphans", "orphan_bytes", "dry_run",
    "grace_seconds", "seconds"}`` (``files``: chunk files deleted; ``orphans_note`` when orphans were
    not looked for; ``skipped`` when another collection ran and ``wait`` is False)."""
    started = time.monotonic()
    result = {'chunks': 0, 'bytes': 0, 'files': 0, 'staged_files': 0, 'orphans': 0, 'orphan_bytes': 0,
              'dry_run': dry_run, 'grace_seconds': grace_seconds}
    with _one_at_a_time(wait) as alone:
        if not alone:
            result['skipped'] = 'another garbage collection is running'
            return result
        cutoff = timezone.now() - timedelta(seconds=grace_seconds)
        _collect_staged(dry_run, result)
        _collect_chunks(cutoff, dry_run, result)
        _collect_orphans(cutoff.timestamp(), dry_run, result)
    result['seconds'] = round(time.monotonic() - started, 3)
    return result


def summary(result: dict) -> str:
    """One line of a collection's result, for the log and the command."""
    if 'skipped' in result:
        return f'garbage collection skipped: {result["skipped"]}'
    verb = 'would remove' if result['dry_run'] else 'removed'
    line = (f'garbage collection (grace {result["grace_seconds"]} s): {verb} {result["chunks"]} chunks '
            f'({result["bytes"]} bytes), {result["staged_files"]} expired staged files, '
            f'{result["orphans"]} orphan files ({result["orphan_bytes"]} bytes) in {result["seconds"]} s')
    if result.get('orphans_note'):
        line += f'; {result["orphans_note"]}'
    return line


def stats() -> dict:
    """What the store holds: objects, versions, chunks and their bytes, the bytes of the head
    versions' files (their open FileRows, each file counted in full, however often its content is
    stored) and their ratio, staged files, users."""
    chunks = Blob.objects.aggregate(count=Count('pk'), size=Sum('size'))
    heads = FileRow.objects.filter(until__isnull=True).aggregate(count=Count('pk'), size=Sum('size'))
    logical, files = heads['size'] or 0, heads['count']
    stored = chunks['size'] or 0
    return {
        'objects': OaiObject.objects.count(),
        'versions': Version.objects.count(),
        'chunks': chunks['count'],
        'stored_bytes': stored,
        'head_files': files,
        'logical_bytes': logical,
        'dedup_ratio': round(logical / stored, 3) if stored else None,
        'staged_files': StagedFile.objects.count(),
        'users': get_user_model().objects.count(),
    }


_stop = threading.Event()


def _periodic(interval: float, grace: int) -> None:
    delay = min(interval, 60.0)         # the first run soon after the start: a server restarted daily still collects
    while not _stop.wait(delay):
        delay = interval
        try:
            result = collect(grace, wait=False)
            log.info('%s', summary(result))
        except Exception:  # noqa: BLE001 — logged; the next run tries again
            log.exception('garbage collection failed; trying again in %s s', interval)
        finally:
            connections.close_all()     # this thread's connections only


def start_periodic() -> threading.Thread | None:
    """Start collecting every OAIO_GC_INTERVAL_SECONDS in a daemon thread of this process (``serve``
    calls it once; with --workers its supervisor process runs it); None when the interval is 0."""
    interval = settings.OAIO_GC_INTERVAL_SECONDS
    if interval <= 0:
        return None
    thread = threading.Thread(target=_periodic, args=(interval, settings.OAIO_GC_GRACE_SECONDS),
                              name='oaio-gc', daemon=True)
    thread.start()
    return thread


def stop_periodic() -> None:
    _stop.set()
