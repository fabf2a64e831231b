"""Object operations: register, upload, delete, subscribe, wipe — the rules of the model.

Each public function runs in one transaction, checks the caller's access right first, and records
the change for every affected subscriber (the change feed) and in the action log.
"""
import functools
import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import OuterRef, Q, Subquery

from oaio import protocol as p

from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import (
    ActionLog,
    Blob,
    BlobHolder,
    Change,
    FileRow,
    OaiObject,
    ObjectBlob,
    StagedFile,
    Subscription,
    Version,
)
from .notify import announce_change, notify_commit

log = logging.getLogger(__name__)
RIGHT_ORDER = {right: index for index, right in enumerate(p.ACCESS_RIGHTS)}
BATCH = 900         # values per SQL ``IN (…)``: below SQLite's variable limit on every build


@dataclass(frozen=True)
class Context:
    """Who is asking: the authenticated user and the device and app from the X-OAIO headers."""

    user: object
    device_id: str = ''
    app_id: str = ''


WITHOUT_PATHS: dict = {}      # object_dict(files=WITHOUT_PATHS): the values as stored, no _file_paths


def object_dict(version: Version, csh_id: str, access_right: str, files: dict | None = None) -> dict:
    """The wire form of a version: exactly the ten fields of the original protocol. ``_file_paths``
    is derived from the version's files (``files``, its manifest, if the caller has it), sorted —
    except with ``files=WITHOUT_PATHS``, for clients that take the files as deltas (the change feed
    with ``files=delta``, answers to uploads with ``files_delta``)."""
    values = version.values
    if version.has_file_paths and files is not WITHOUT_PATHS:
        files = manifest(version.oai_object_id, version.pk) if files is None else files
        values = {**values, p.FILE_PATHS_KEY: sorted(files)}
    return {
        'oaio_id': version.oai_object.oaio_id,
        'client_stamp': version.stamp,
        'server_stamp': version.stamp,
        'client_values': values,
        'server_values': values,
        'csh_id': csh_id,
        'username': version.user.username if version.user else '',
        'device_id': version.device_id,
        'app_id': version.app_id,
        'csh_access_right': access_right,
    }


def subscription_of(user, oaio_id: str) -> Subscription:
    """The caller's subscription to ``oaio_id``; NotFound (never Forbidden) for non-subscribers."""
    sub = (Subscription.objects.select_related('oai_object__head__user', 'oai_object__head__oai_object')
           .filter(user=user, oai_object__oaio_id=oaio_id).first())
    if sub is None:
        raise NotFound(f'no object {oaio_id!r} is shared with you')
    return sub


def file_entry(user, oaio_id: str, stamp: str, path: str) -> dict:
    """The manifest entry of file ``path`` of version ``stamp`` of ``oaio_id``, for any subscriber
    (two queries, whatever the size of the object); NotFound for non-subscribers, as
    subscription_of, and for paths not in the version."""
    version = Version.objects.filter(oai_object=OuterRef('oai_object'), stamp=stamp).values('pk')[:1]
    found = list(Subscription.objects.filter(user=user, oai_object__oaio_id=oaio_id)
                 .values_list('oai_object_id', Subquery(version))[:1])
    if not found:
        raise NotFound(f'no object {oaio_id!r} is shared with you')
    object_id, version_id = found[0]
    row = _rows_of(object_id, version_id).filter(path=path).first() if version_id else None
    if row is None:
        raise NotFound(f'version {stamp} of {oaio_id!r} has no file {path!r}')
    return row.entry()


def _rows_of(object_id: int, version_id: int):
    """The FileRows of one version of an object."""
    return FileRow.objects.filter(oai_object_id=object_id, since__lte=version_id).filter(
        Q(until__isnull=True) | Q(until__gt=version_id))


@functools.lru_cache(maxsize=8)
def _cached_manifest(object_id: int, version_id: int) -> dict:
    return {row.path: row.entry() for row in _rows_of(object_id, version_id)}


def manifest(object_id: int, version_id: int) -> dict:
    """The files of a version, ``{path: entry}``, from its FileRows (a copy: versions never change,
    so the last few are kept parsed — a fresh device's first sync asks for each)."""
    return dict(_cached_manifest(object_id, version_id))


def version_manifest(user, oaio_id: str, stamp: str) -> dict:
    """``manifest/<oaio_id>/<stamp>``: every file of a version, for a client that takes files as
    deltas but missed the version before (``{"files", "file_paths"}``); NotFound as file_entry."""
    sub = subscription_of(user, oaio_id)
    version = Version.objects.filter(oai_object_id=sub.oai_object_id, stamp=stamp).only('pk', 'has_file_paths').first()
    if version is None:
        raise NotFound(f'{oaio_id!r} has no version {stamp}')
    return {'files': manifest(sub.oai_object_id, version.pk), 'file_paths': version.has_file_paths}


def head_manifests(object_ids) -> dict[int, dict]:
    """The files of the head versions of many objects at once: their open FileRows."""
    files: dict[int, dict] = {object_id: {} for object_id in object_ids}
    for batch in batches(sorted(files)):
        for row in FileRow.objects.filter(oai_object_id__in=batch, until__isnull=True):
            files[row.oai_object_id][row.path] = row.entry()
    return files


def _require_right(sub: Subscription, allowed: tuple, action: str) -> None:
    if sub.access_right not in allowed:
        raise Forbidden(f'your access right {sub.access_right!r} does not allow to {action} {sub.oai_object.oaio_id!r}')


def _lock_change_feed() -> None:
    """Make change rows commit in the order of their ``seq``.

    A cursor promises that nothing at or below it is still to come. PostgreSQL hands out sequence
    numbers at insert time, so two transactions could commit seq 11 before seq 10, and a client
    that saw 11 would never see 10. Holding this lock from the insert until the commit orders them.
    (SQLite needs nothing: its IMMEDIATE transactions run one at a time.)
    """
    if connection.vendor == 'postgresql':
        with connection.cursor() as cursor:
            cursor.execute(f'LOCK TABLE {Change._meta.db_table} IN SHARE ROW EXCLUSIVE MODE')


CONTENT_LOCK = 0x6f61696f636e74         # "oaiocnt": the key of content_lock's advisory lock


def content_lock(exclusive: bool = False) -> None:
    """Hold the content lock until the transaction ends (PostgreSQL): shared by transactions that
    name stored chunks (register/, upload/, packs), exclusive by garbage collection (gc.py) while
    it deletes chunks, so that a version never names a chunk GC is deleting. SQLite needs nothing:
    its IMMEDIATE transactions run one at a time."""
    if connection.vendor == 'postgresql':
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT pg_advisory_xact_lock{"" if exclusive else "_shared"}(%s)', [CONTENT_LOCK])


def _record(ctx: Context, action: str, oaio_id: str, users, detail: str = '') -> None:
    """Append the change for each affected user and the action log entry, and wake long polls."""
    _lock_change_feed()
    Change.objects.bulk_create([Change(user_id=getattr(user, 'pk', user), oaio_id=oaio_id) for user in users])
    announce_change(connection)         # other server processes: NOTIFY, delivered at the commit
    ActionLog.objects.create(user=ctx.user, device_id=ctx.device_id, app_id=ctx.app_id, action=action,
                             oaio_id=oaio_id, detail=detail[:255])
    transaction.on_commit(notify_commit)    # this process: at once, no round trip


def record_admin_change(admin_user, oaio_id: str, user_ids) -> None:
    """A staff member changed subscriptions or objects in the admin: tell the users' change feeds."""
    _record(Context(user=admin_user, app_id='admin'), 'admin', oaio_id, list(user_ids))


def _subscriber_ids(obj: OaiObject) -> list:
    return list(obj.subscriptions.values_list('user_id', flat=True))


def _delete_object(obj: OaiObject, user) -> list:
    """Delete an object with its versions and subscriptions, and ``user``'s staged files for its id
    (other users' staged files are theirs: a deletion must not reach into them); return its subscribers."""
    subscribers = _subscriber_ids(obj)
    obj.head = None
    obj.save(update_fields=['head'])
    obj.delete()
    StagedFile.objects.filter(oaio_id=obj.oaio_id, user=user).delete()
    return subscribers


def batches(items: list):
    """``items`` in slices of BATCH: one SQL ``IN (…)`` each."""
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


def possessed(user, hashes) -> set[str]:
    """The hashes of ``hashes`` whose content ``user`` may name in a version: content the user sent
    (BlobHolder) or content of a version of an object the user is subscribed to (ObjectBlob).

    Cross-user deduplication saves storage, never proof: a hash alone is public knowledge (a
    document's checksum, a guess), so naming it must not hand anyone the content ("Dropship").
    """
    wanted = sorted(set(hashes))
    found: set[str] = set()
    for batch in batches(wanted):
        found.update(BlobHolder.objects.filter(user=user, blob_id__in=batch).values_list('blob_id', flat=True))
        rest = [digest for digest in batch if digest not in found]
        if rest:
            found.update(ObjectBlob.objects.filter(blob_id__in=rest, oai_object__subscriptions__user=user)
                         .values_list('blob_id', flat=True))
    return found


def missing_blobs(user, hashes: list[str]) -> list[str]:
    """``blobs/missing/``: the hashes of ``hashes`` that ``user`` must upload — answered relative to
    what the user may read, so that it tells nothing about other users' content."""
    have = possessed(user, hashes)
    return [digest for digest in hashes if digest not in have]


def _manifest(oaio_id: str, stamp: str, values: dict, declared: object, user) -> dict:
    """Build the file manifest of a new version; every file must already be stored and be the
    caller's to name (see :func:`possessed`), else it is reported missing, as unknown content is.

    A path's content is what the client declares in ``files`` (our extension) — the sha256 of a file
    stored as one piece, or ``{"sha256", "size", "chunks": [[sha256, size], …]}`` of a file stored in
    chunks (chunks/) — or the file it put under ``files/<id>/<stamp>/<path>`` before (the original
    storage-host protocol). Manifest entries: ``{"sha256", "size"}``, plus ``"chunks"`` for the
    chunked ones (the file is their bytes in order; its sha256 is the client's to check).
    """
    paths = values.get(p.FILE_PATHS_KEY, [])
    declared = declared or {}
    if not isinstance(declared, dict) or not set(declared) <= set(paths):
        raise InvalidInput(f'"files" must map paths listed in {p.FILE_PATHS_KEY} to sha256 hashes or chunk lists')
    chunked = {}
    for path, entry in declared.items():
        if isinstance(entry, dict):
            size = entry.get('size')
            if type(size) is not int or size < 0:
                raise InvalidInput(f'file {path!r}: "size" must be a non-negative integer')
            chunked[path] = {'sha256': p.check_sha256(entry.get('sha256')), 'size': size,
                             'chunks': p.check_chunk_list(entry.get('chunks'), size, f'chunks of {path!r}')}
    staged = {}
    undeclared = [path for path in paths if path not in declared]
    for batch in batches(undeclared):
        staged.update(StagedFile.objects.filter(oaio_id=oaio_id, stamp=stamp, user=user, path__in=batch)
                      .values_list('path', 'blob_id'))
    hashes = {path: staged.get(path) if path not in declared else None if path in chunked
              else p.check_sha256(declared[path]) for path in paths}
    wanted = [digest for path, digest in hashes.items() if digest and path in declared]
    wanted += [chunk[0] for entry in chunked.values() for chunk in entry['chunks']]
    named = possessed(user, wanted)
    named.update(staged.values())
    sizes = {}
    for batch in batches(sorted(named)):
        sizes.update(Blob.objects.filter(sha256__in=batch).values_list('sha256', 'size'))
    missing = sorted(path for path, digest in hashes.items() if path not in chunked and digest not in sizes)
    missing += sorted(path for path, entry in chunked.items()
                      if any(sizes.get(chunk[0]) != chunk[1] for chunk in entry['chunks']))
    if missing:
        raise InvalidInput('files of this version are not stored yet; upload them first',
                           missing=missing[:100])
    return {path: chunked[path] if path in chunked else {'sha256': digest, 'size': sizes[digest]}
            for path, digest in hashes.items()}


def _delta(oaio_id: str, stamp: str, values: dict, body: dict, obj: OaiObject | None, had_paths: bool,
           user) -> tuple[dict, bool]:
    """A body with ``files_delta`` (``{path: sha256 | {"sha256", "size", "chunks"} | null}``, the
    changes against the version it is based on — the head of ``obj``, nothing for a new object):
    the changes resolved (``{path: manifest entry | None}``, each named content checked as
    :func:`_manifest` checks it) and whether the new version has ``_file_paths``. Costs what
    changed: the unchanged files are the head's, checked when they came."""
    delta = body.get('files_delta')
    if not isinstance(delta, dict):
        raise InvalidInput('"files_delta" must map paths to sha256 hashes, chunk lists or null')
    if p.FILE_PATHS_KEY in values:
        raise InvalidInput(f'a body with "files_delta" must not list {p.FILE_PATHS_KEY}: the server derives it')
    for path in delta:
        p.check_relative_path(path)
    live = {path: entry for path, entry in delta.items() if entry is not None}
    resolved = _manifest(oaio_id, stamp, {p.FILE_PATHS_KEY: sorted(live)}, live, user)
    count = 0
    if obj is not None:
        open_rows = FileRow.objects.filter(oai_object=obj, until__isnull=True)
        existing: set[str] = set()
        for batch in batches(sorted(delta)):
            existing.update(open_rows.filter(path__in=batch).values_list('path', flat=True))
        count = open_rows.count() - len(existing)
    count += len(live)
    if count > p.MAX_FILE_PATHS:
        raise InvalidInput(f'{p.FILE_PATHS_KEY} would list {count} paths, the limit is {p.MAX_FILE_PATHS} per object')
    return {path: resolved.get(path) for path in delta}, had_paths or count > 0


def delta_of(object_id: int, version_id: int) -> dict:
    """What version ``version_id`` changed in its object's files: ``{path: entry}`` for the files it
    added or changed, ``{path: None}`` for the ones it removed (two indexed queries)."""
    delta = {row.path: row.entry() for row in FileRow.objects.filter(oai_object_id=object_id, since=version_id)}
    for path in FileRow.objects.filter(oai_object_id=object_id, until=version_id).values_list('path', flat=True):
        delta.setdefault(path, None)
    return delta


def contents(entry: dict) -> list:
    """The stored pieces of a manifest entry, in order: its chunks, or the one blob of its sha256."""
    return entry.get('chunks') or [[entry['sha256'], entry['size']]]


def check_stage(user, oaio_id: str, stamp: str) -> None:
    """May ``user`` stage files for version ``stamp`` of ``oaio_id``? An existing object needs a
    write right, and its stored versions never change; an id not registered yet is anyone's."""
    if OaiObject.objects.filter(oaio_id=oaio_id).exists():
        sub = subscription_of(user, oaio_id)
        _require_right(sub, p.WRITE_RIGHTS, 'change')
        if Version.objects.filter(oai_object=sub.oai_object, stamp=stamp).exists():
            raise InvalidInput(f'version {stamp} of {oaio_id!r} is stored already; versions never change')


@transaction.atomic
def delete_staged(user, oaio_id: str, stamp: str, prefix: str) -> int:
    """Remove ``user``'s staged files under ``<oaio_id>/<stamp>/[prefix]``; stored versions never
    change, so their files stay until the object is deleted. Returns how many were removed."""
    if OaiObject.objects.filter(oaio_id=oaio_id).exists():
        _require_right(subscription_of(user, oaio_id), p.WRITE_RIGHTS, 'change')
    staged = StagedFile.objects.filter(oaio_id=oaio_id, stamp=stamp, user=user)
    if prefix:
        staged = staged.filter(path=prefix) | staged.filter(path__startswith=prefix + '/')
    count, _ = staged.delete()
    return count


@transaction.atomic
def stage_file(user, oaio_id: str, stamp: str, path: str, blob: Blob) -> None:
    """Stage ``blob`` as file ``path`` of the coming version ``stamp``; the last PUT of a path wins.

    StagedFile has no unique index, so two concurrent PUTs of one path could both insert a row (and
    later ones fail with MultipleObjectsReturned). On PostgreSQL an advisory lock on the address
    serializes them; SQLite's IMMEDIATE transactions run one at a time anyway.
    """
    if connection.vendor == 'postgresql':
        address = f'{user.pk}\0{oaio_id}\0{stamp}\0{path}'.encode('utf-8', 'surrogatepass')
        key = int.from_bytes(hashlib.blake2b(address, digest_size=8).digest(), 'big', signed=True)
        with connection.cursor() as cursor:
            cursor.execute('SELECT pg_advisory_xact_lock(%s)', [key])
    StagedFile.objects.update_or_create(oaio_id=oaio_id, stamp=stamp, path=path, user=user, defaults={'blob': blob})
    BlobHolder.objects.bulk_create([BlobHolder(user=user, blob=blob)], ignore_conflicts=True)


def _new_version(obj: OaiObject, ctx: Context, stamp: str, values: dict, files: dict,
                 changes: dict | None = None, has_file_paths: bool | None = None) -> Version:
    """Store a version with its files as FileRows: the rows of the paths it changes or removes
    are closed, rows for the paths it changes or adds are added — what changed, not the object.

    ``files`` is the version's whole manifest; or, with ``changes`` (``{path: entry | None}``, a
    delta upload's resolved files_delta), only what changed: then only the rows of those paths
    are read, and ``has_file_paths`` says whether the version has ``_file_paths``."""
    server_stamp = max(p.now_stamp(), stamp)
    stored_values = {key: value for key, value in values.items() if key != p.FILE_PATHS_KEY}
    if has_file_paths is None:
        has_file_paths = p.FILE_PATHS_KEY in values
    version = Version.objects.create(oai_object=obj, stamp=stamp, server_stamp=server_stamp, values=stored_values,
                                     has_file_paths=has_file_paths, user=ctx.user,
                                     device_id=ctx.device_id, app_id=ctx.app_id)
    open_rows = FileRow.objects.filter(oai_object=obj, until__isnull=True).only('pk', 'path', 'sha256', 'size',
                                                                                'chunks')
    if changes is None:
        current = {row.path: row for row in open_rows}
        wanted = files
    else:
        current = {}
        for batch in batches(sorted(changes)):
            current.update((row.path, row) for row in open_rows.filter(path__in=batch))
        wanted = {path: entry for path, entry in changes.items() if entry is not None}
    closing = [row.pk for path, row in current.items()
               if (changes is None or path in changes) and wanted.get(path) != row.entry()]
    for batch in batches(closing):
        FileRow.objects.filter(pk__in=batch).update(until=version.pk)
    added = {path: entry for path, entry in wanted.items() if path not in current or current[path].entry() != entry}
    FileRow.objects.bulk_create([
        FileRow(oai_object=obj, path=path, since=version.pk, sha256=entry['sha256'], size=entry['size'],
                chunks=entry.get('chunks')) for path, entry in added.items()], batch_size=BATCH)
    obj.head = version
    obj.save(update_fields=['head'])
    stored = sorted({chunk[0] for entry in added.values() for chunk in contents(entry)})
    for batch in batches(stored):
        ObjectBlob.objects.bulk_create([ObjectBlob(oai_object=obj, blob_id=digest) for digest in batch],
                                       ignore_conflicts=True)
    StagedFile.objects.filter(oaio_id=obj.oaio_id, stamp=stamp, user=ctx.user).delete()
    return version


def _checked_upload(body: dict) -> tuple[str, str, dict]:
    oaio_id = p.check_oaio_id(body.get('oaio_id'))
    stamp = p.check_stamp(body.get('client_stamp'), 'client_stamp')
    values = p.check_values(body.get('client_values', {}))
    return oaio_id, stamp, values


@transaction.atomic
def register(ctx: Context, body: dict) -> dict:
    """Create a new object owned by the caller, with its first version and a ``C`` subscription."""
    content_lock()
    oaio_id, stamp, values = _checked_upload(body)
    csh_id = p.check_csh_id(body.get('csh_id') or settings.OAIO_DEFAULT_STORAGE_HOST)
    if OaiObject.objects.filter(oaio_id=oaio_id).exists():
        raise Conflict(f'an object with id {oaio_id!r} is already registered')
    delta = 'files_delta' in body
    if delta:
        changes, has_file_paths = _delta(oaio_id, stamp, values, body, None, False, ctx.user)
        files = {path: entry for path, entry in changes.items() if entry is not None}
        values = {**values, p.FILE_PATHS_KEY: sorted(files)} if has_file_paths else values
    else:
        files = _manifest(oaio_id, stamp, values, body.get('files'), ctx.user)
    try:
        with transaction.atomic():
            obj = OaiObject.objects.create(oaio_id=oaio_id, owner=ctx.user, csh_id=csh_id)
    except IntegrityError:      # registered concurrently (PostgreSQL: the unique index decides)
        raise Conflict(f'an object with id {oaio_id!r} is already registered') from None
    version = _new_version(obj, ctx, stamp, values, files)
    Subscription.objects.create(oai_object=obj, user=ctx.user, access_right=p.CREATE_RIGHT)
    _record(ctx, 'register', oaio_id, [ctx.user], stamp)
    return object_dict(version, csh_id, p.CREATE_RIGHT, WITHOUT_PATHS if delta else files)


@transaction.atomic
def upload(ctx: Context, body: dict) -> dict:
    """Add a version on top of the head named by ``server_stamp``; 409 with the head otherwise."""
    content_lock()
    oaio_id, stamp, values = _checked_upload(body)
    p.check_stamp(body.get('server_stamp'), 'server_stamp')
    sub = subscription_of(ctx.user, oaio_id)
    _require_right(sub, p.WRITE_RIGHTS, 'update')
    obj = OaiObject.objects.select_for_update().get(pk=sub.oai_object_id)
    if obj.head_id is None:
        raise Conflict(f'object {oaio_id!r} has no head version on the server; delete it or ask its admin')
    head = Version.objects.select_related('user').get(pk=obj.head_id)
    head.oai_object = obj
    if body.get('server_stamp') != head.stamp:
        raise Conflict(f'the object changed on the server: your version is based on {body.get("server_stamp")!r}, '
                       f'the head is {head.stamp}', head=object_dict(head, obj.csh_id, sub.access_right))
    if stamp <= head.stamp:
        raise Conflict(f'client_stamp {stamp} is not newer than the head {head.stamp}',
                       head=object_dict(head, obj.csh_id, sub.access_right))
    if 'files_delta' in body:
        changes, has_file_paths = _delta(oaio_id, stamp, values, body, obj, head.has_file_paths, ctx.user)
        version = _new_version(obj, ctx, stamp, values, {}, changes, has_file_paths)
        _record(ctx, 'upload', oaio_id, _subscriber_ids(obj), stamp)
        return object_dict(version, obj.csh_id, sub.access_right, WITHOUT_PATHS)
    files = _manifest(oaio_id, stamp, values, body.get('files'), ctx.user)
    version = _new_version(obj, ctx, stamp, values, files)
    _record(ctx, 'upload', oaio_id, _subscriber_ids(obj), stamp)
    return object_dict(version, obj.csh_id, sub.access_right, files)


@transaction.atomic
def delete(ctx: Context, body: dict) -> None:
    """Delete an object with its history and subscriptions (rights D and C)."""
    oaio_id = p.check_oaio_id(body.get('oaio_id'))
    sub = subscription_of(ctx.user, oaio_id)
    _require_right(sub, p.DELETE_RIGHTS, 'delete')
    _record(ctx, 'delete', oaio_id, _delete_object(sub.oai_object, ctx.user))


@transaction.atomic
def subscribe(ctx: Context, body: dict) -> int:
    """Add, change or (right ``x``) remove a user's subscription; returns the subscription id.

    Only a ``C`` subscriber changes other users' subscriptions; anyone may unsubscribe themselves,
    except the owner, who deletes the object instead. The owner's ``C`` cannot be changed.
    """
    oaio_id = p.check_oaio_id(body.get('oaio_id'))
    right = p.check_access_right(body.get('access_right'))
    username = body.get('username')
    if not isinstance(username, str) or not username:
        raise InvalidInput('username must be a non-empty string')
    p.check_storable_text(username, 'username')
    sub = subscription_of(ctx.user, oaio_id)
    obj = sub.oai_object
    is_self = username == ctx.user.username
    if not (sub.access_right == p.CREATE_RIGHT or (is_self and right == p.NO_RIGHT)):
        raise Forbidden(f'only a subscriber with right C can change the subscriptions of {oaio_id!r}')
    target = get_user_model().objects.filter(username=username, is_active=True).first()
    if target is None:
        raise NotFound(f'no user {username!r}')
    if target.pk == obj.owner_id:
        raise Forbidden(f"the owner's subscription of {oaio_id!r} cannot change; delete the object instead")
    existing = Subscription.objects.filter(oai_object=obj, user=target).first()
    if right == p.NO_RIGHT:
        sub_id = existing.pk if existing else 0
        if existing:
            existing.delete()
    else:
        existing, _ = Subscription.objects.update_or_create(oai_object=obj, user=target,
                                                           defaults={'access_right': right})
        sub_id = existing.pk
    _record(ctx, 'subscribe', oaio_id, [target], f'{username}={right}')
    return sub_id


def user_subscriptions(user, oaio_id: str) -> list[dict]:
    """Subscribers of ``oaio_id`` (sorted by right C, D, U, r, then name), or every user with ``x``
    when the object is unknown or not shared with the caller (an invalid id, e.g. empty, is unknown)."""
    try:
        sub = Subscription.objects.filter(user=user, oai_object__oaio_id=p.check_oaio_id(oaio_id)).first()
    except p.ProtocolError:
        sub = None
    if sub is None:
        names = get_user_model().objects.filter(is_active=True).order_by('username').values_list('username', flat=True)
        return [{'username': name, 'access_right': p.NO_RIGHT} for name in names]
    rows = Subscription.objects.filter(oai_object_id=sub.oai_object_id).values_list('user__username', 'access_right')
    ordered = sorted(rows, key=lambda row: (RIGHT_ORDER[row[1]], row[0]))
    return [{'username': name, 'access_right': right} for name, right in ordered]


def has_head(sub: Subscription) -> bool:
    """Whether the object of ``sub`` has its head version; False, with a warning, if not.

    The server never leaves an object without a head (models.py), but its row can vanish behind the
    server's back (the database by hand; once, the admin): answers about many objects leave such an
    object out instead of failing for all of them.
    """
    if sub.oai_object.head_id is None:
        log.warning('object %r has no head version; it is left out of the answer', sub.oai_object.oaio_id)
        return False
    return True


def listing(user) -> list[dict]:
    """The head of every object the user is subscribed to (``oaio_stampz/``)."""
    subs = Subscription.objects.filter(user=user).select_related('oai_object__head__user',
                                                                 'oai_object__head__oai_object')
    subs = [sub for sub in subs if has_head(sub)]
    files = head_manifests(sub.oai_object_id for sub in subs)
    return [object_dict(sub.oai_object.head, sub.oai_object.csh_id, sub.access_right, files[sub.oai_object_id])
            for sub in subs]


@transaction.atomic
def wipe_user(ctx: Context, username: object) -> None:
    """Delete a user with their objects, subscriptions and log entries (oneself, or staff)."""
    if not isinstance(username, str) or not username:
        raise InvalidInput('Uid must be a non-empty user name')
    p.check_storable_text(username, 'Uid')
    if username != ctx.user.username and not ctx.user.is_staff:
        raise Forbidden('only staff can wipe other users')
    target = get_user_model().objects.filter(username=username).first()
    if target is None:
        raise NotFound(f'no user {username!r}')
    # delete every object first, then record: the same lock order as upload/ (object rows, then
    # the change feed), so a concurrent upload cannot deadlock with a wipe on PostgreSQL
    gone = [(obj.oaio_id, [uid for uid in _delete_object(obj, target) if uid != target.pk])
            for obj in OaiObject.objects.filter(owner=target)]
    for oaio_id, others in gone:
        _record(ctx, 'delete', oaio_id, others, f'wipe_user {username}')
    StagedFile.objects.filter(user=target).delete()
    target.delete()
