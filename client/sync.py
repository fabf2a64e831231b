"""The sync engine: pull the change feed, apply remote versions (merging with local edits), push
local versions with only the files the server lacks, and send queued deletions.

The engine works on the store's records; the facade serializes calls to it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable

import requests

from . import chunking
from . import protocol as p
from .api import ServerApi
from .chunking import hash_file
from .errors import (AccessDenied, AuthenticationError, ClockSkewError, ConflictError, InvalidServerData, OaioError,
                     OfflineError, ServerError)
from .merge import conflict_name, merge_files, merge_values, same_value
from .model import OaiObject
from oaio.protocol.durable import syncfs
from .store import LocalStore, ObjectRecord, make_private_dirs, write_atomic

log = logging.getLogger(__name__)

CHUNK_BYTES = p.CHUNK_BYTES
PUSH_ROUNDS = 3
DOWNLOAD_THREADS = 4        # packs fetched at once: the next request is sent while the server
                            # answers the last (memory: a chunk per thread)
UPLOAD_THREADS = 3          # packs sent at once


def new_stamp(after: str = '') -> str:
    """A fresh stamp, later than ``after`` even if this device's clock is behind."""
    stamp = p.now_stamp()
    return stamp if stamp > after else str(int(after) + 1)


def check_manifest(files: object, paths: list[str]) -> dict:
    """Validate a server manifest ``{path: {"sha256", "size"}}`` against the version's file paths."""
    if not isinstance(files, dict) or set(files) != set(paths):
        raise InvalidServerData('the file manifest does not match _file_paths')
    for entry in files.values():
        if not isinstance(entry, dict) or not isinstance(entry.get('size'), int) or entry['size'] < 0:
            raise InvalidServerData('a file manifest entry has no valid size')
        p.check_sha256(entry.get('sha256'))
        if 'chunks' in entry:
            p.check_chunk_list(entry['chunks'], entry['size'])
    return files


class _Assembly:
    """The files of one download being assembled in temporary files of the store, chunk by chunk.

    ``targets``: chunk sha256 → [(path, offset)], every place a chunk goes. Chunks are written with
    pwrite(2) at their offsets by whichever thread has them (a temporary file is opened per write,
    so 10,000 small files never hold 10,000 descriptors)."""

    def __init__(self, engine: SyncEngine, record: ObjectRecord, entries: dict):
        self.engine, self.record, self.entries = engine, record, entries
        self.temps: dict[str, str] = {}
        self.targets: dict[str, list[tuple[str, int]]] = {}
        self.sizes: dict[str, int] = {}
        self.left: dict[str, int] = {}              # path → bytes still to arrive
        self.lock = threading.Lock()
        self.partial: set[str] = set()              # paths assembled in a partial file (kept if incomplete)
        for path, entry in entries.items():
            offset = 0
            pieces = chunking.pieces(entry)
            if 'chunks' in entry:
                self.temps[path] = str(engine.store.partial_file(entry['sha256'], path))
                self.partial.add(path)
                os.close(os.open(self.temps[path], os.O_WRONLY | os.O_CREAT, 0o600))
            else:
                fd, self.temps[path] = engine.store.temp_file()
                os.close(fd)
            self.left[path] = entry['size']
            for digest, size in pieces:
                self.targets.setdefault(digest, []).append((path, offset))
                self.sizes[digest] = size
                offset += size
            if path in self.partial:
                self._resume(path, pieces)

    def _resume(self, path: str, pieces: list) -> None:
        """Count the chunks an earlier, interrupted download of ``path`` left in its partial file
        (each verified) as arrived."""
        offset = 0
        with open(self.temps[path], 'rb') as file:
            for digest, size in pieces:
                file.seek(offset)
                data = file.read(size)
                if len(data) == size and hashlib.sha256(data).hexdigest() == digest:
                    self.targets[digest].remove((path, offset))
                    if not self.targets[digest]:
                        del self.targets[digest]
                    self.left[path] -= size
                offset += size
        if self.left[path] < self.entries[path]['size']:
            log.info('download of %r resumes: %d of %d bytes are here already', path,
                     self.entries[path]['size'] - self.left[path], self.entries[path]['size'])

    def _write(self, digest: str, data: bytes) -> None:
        for path, offset in self.targets.pop(digest, ()):
            fd = os.open(self.temps[path], os.O_WRONLY)
            try:
                os.pwrite(fd, data, offset)
            finally:
                os.close(fd)
            with self.lock:
                self.left[path] -= len(data)
                left = self.left[path]
            self.engine._report('down', path, self.entries[path]['size'] - left, self.entries[path]['size'])

    def copy_local(self, sources: dict) -> None:
        """Take the chunks that local files hold (each verified: a local file may change meanwhile)."""
        for digest, (source, offset) in sources.items():
            if digest not in self.targets:
                continue
            try:
                with open(source, 'rb') as file:
                    file.seek(offset)
                    data = file.read(self.sizes[digest])
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == digest:
                self._write(digest, data)

    def fetch(self) -> None:
        """Fetch the chunks still wanted, in packs of about PACK_BYTES, several at a time."""
        batches, batch, size = [], [], 0
        for digest in list(self.targets):
            if self.sizes[digest] == 0:         # an empty file: nothing to fetch
                self._write(digest, b'')
                continue
            if batch and (size + self.sizes[digest] > p.PACK_BYTES or len(batch) == p.MAX_MISSING_HASHES):
                batches.append(batch)
                batch, size = [], 0
            batch.append(digest)
            size += self.sizes[digest]
        if batch:
            batches.append(batch)
        if len(batches) <= 1:
            for batch in batches:
                self._fetch_pack(batch)
            return
        with ThreadPoolExecutor(min(DOWNLOAD_THREADS, len(batches)), thread_name_prefix='oaio-download') as pool:
            fetches = [pool.submit(self._fetch_pack, batch) for batch in batches]
            wait(fetches, return_when=FIRST_EXCEPTION)
            for fetch in fetches:
                fetch.cancel()          # those not started yet
        failed = [fetch.exception() for fetch in fetches if not fetch.cancelled() and fetch.exception()]
        if failed:
            raise failed[0]

    def _fetch_pack(self, hashes: list[str]) -> None:
        wanted = iter(hashes)
        parser = p.PackParser()
        data: list[bytes] = []
        digest, size = '', 0
        try:
            with self.engine.api.fetch_chunks(hashes) as answer:
                for piece in answer.iter_content(CHUNK_BYTES):
                    for event in parser.feed(piece):
                        if event[0] == 'start':
                            digest, size, data = event[1], event[2], []
                            expected = next(wanted, None)
                            if digest != expected or size != self.sizes[digest]:
                                raise InvalidServerData(f'the server sent a chunk of {self._name(expected)} out of '
                                                        f'order or of the wrong size ({size} bytes)')
                        elif event[0] == 'data':
                            data.append(event[1])
                        else:
                            content = b''.join(data)
                            if hashlib.sha256(content).hexdigest() != digest:
                                log.warning('refused chunk %s of %s from the server: its bytes do not match',
                                            digest, self._name(digest))
                                raise InvalidServerData(f'a chunk of {self._name(digest)} does not match its sha256')
                            self._write(digest, content)
                parser.close()
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            # a broken connection is no verdict on the object: abort the round, so the cursor stays
            # before this change and the next sync fetches the rest (what arrived is kept)
            raise OfflineError(f'download interrupted: {exc.__class__.__name__}') from None
        except p.ProtocolError as exc:
            raise InvalidServerData(f'the server sent a malformed pack: {exc}') from None
        if next(wanted, None) is not None:
            raise InvalidServerData('the server sent fewer chunks than asked for')

    def _name(self, digest: str | None) -> str:
        """The file a chunk belongs to, for messages (the first, if several hold it)."""
        for path, entry in self.entries.items():
            if any(chunk[0] == digest for chunk in chunking.pieces(entry)):
                return f'file {path!r}'
        return f'chunk {digest}'

    def place(self) -> dict:
        """Check every complete file against its sha256 and size, make them durable with one
        syncfs, rename them into place; drop the incomplete ones. Returns their ``record.hashes``."""
        complete = {}
        try:
            for path, entry in self.entries.items():
                if self.left[path] != 0:
                    continue
                temp = self.temps[path]
                if 'chunks' in entry:           # a one-piece file was verified as its chunk
                    if chunking.file_sha256(temp) != entry['sha256']:
                        raise InvalidServerData(f'file {path!r} does not match its sha256')
                if os.path.getsize(temp) != entry['size']:
                    raise InvalidServerData(f'file {path!r} does not match its size')
                complete[path] = temp
            if not complete:
                return {}
            syncfs(self.engine.store.root)
            placed = {}
            folders = set()
            for path, temp in complete.items():
                target = self.engine.store.file_path(self.record, path)
                make_private_dirs(target.parent)
                os.replace(temp, target)
                folders.add(target.parent)
                stat = target.stat()
                entry = self.entries[path]
                placed[path] = [stat.st_size, stat.st_mtime_ns, entry['sha256']] + (
                    [entry['chunks']] if 'chunks' in entry else [])
            syncfs(self.engine.store.root)          # the renames
            return placed
        finally:
            for path, temp in self.temps.items():       # a partial download stays for the next attempt
                if os.path.exists(temp) and (path not in self.partial or self.left[path] == 0):
                    os.unlink(temp)


class SyncEngine:
    """Synchronizes one store with one server session."""

    def __init__(self, store: LocalStore, api: ServerApi, device_id: str):
        self.store, self.api, self.device_id = store, api, device_id
        self.records: dict[str, ObjectRecord] = store.load_records()
        # ids whose record had a local version to upload when last saved: push() looks at these
        # instead of every record, so a round costs what changed, not the number of objects
        self.pending_ids = {oaio_id for oaio_id, record in self.records.items() if record.obj.pending}
        self.state = store.load_state()
        self.errors: list[str] = []
        self.notices: list[str] = []            # conflict copies made, uploads on hold (not errors)
        self.on_progress: Callable[[str, str, int, int], None] | None = None    # (up|down, path, done, total)
        self._progress_lock = threading.Lock()  # downloads report from several threads, one call at a time
        self.rejected: set[str] = set()         # ids whose registration the server refused (409)
        self.on_applied: Callable[[list[str]], None] | None = None     # ids a pulled change changed, as it is applied

    # whole rounds ---------------------------------------------------------------------------

    def check_clock(self) -> None:
        server = self.api.current_stamp()
        skew = p.stamp_diff_seconds(p.now_stamp(), p.check_stamp(server, 'server clock'))
        if abs(skew) > p.MAX_STAMP_DIFF_SECONDS:
            raise ClockSkewError(f'the clocks of this device and the server differ by {skew:.0f} s '
                                 f'(more than {p.MAX_STAMP_DIFF_SECONDS:.0f} s); fix the clock to sync')

    def sync(self) -> None:
        """One full round: clock check, queued deletions, pull, push."""
        self.errors, self.notices = [], []
        self.check_clock()
        self.push_deletes()
        self.pull()
        self.push()
        if not self.errors:
            self.store.last_sync_stamp = p.now_stamp()

    # pull -----------------------------------------------------------------------------------

    def pull(self, first_answer: dict | None = None) -> list[str]:
        """Apply the change feed from the saved cursor; return the ids of objects that changed."""
        changed: list[str] = []
        answer = first_answer or self.api.changes(self.state['cursor'])
        while True:
            if not isinstance(answer, dict) or not isinstance(answer.get('changes'), list) \
                    or not str(answer.get('cursor', '')).isdigit():
                raise InvalidServerData('the change feed answer is malformed')
            if answer.get('snapshot'):
                changed += self._forget_unlisted(answer['changes'])
            for entry in answer['changes']:
                applied = self._apply_entry(entry)
                changed += applied
                if applied and self.on_applied:
                    self.on_applied(applied)
            self.state['cursor'] = str(answer['cursor'])
            self.store.save_state(self.state)
            if not answer.get('more'):
                return changed
            answer = self.api.changes(self.state['cursor'])

    def _apply_entry(self, entry: object) -> list[str]:
        oaio_id = entry.get('oaio_id') if isinstance(entry, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get('oaio'), dict):     # name the object in errors
            oaio_id = entry['oaio'].get('oaio_id')
        if oaio_id in self.state['pending_deletes']:        # deleted here; the server hears of it next
            return []
        try:
            if isinstance(entry, dict) and 'gone' in entry:
                return self.apply_gone(p.check_oaio_id(oaio_id), str(entry['gone']))
            if isinstance(entry, dict) and self._known_version(oaio_id, entry.get('oaio')):
                return []
            raw = entry.get('oaio') if isinstance(entry, dict) else None
            files = entry.get('files', {}) if isinstance(entry, dict) else {}
            if isinstance(entry, dict) and 'files_delta' in entry and isinstance(raw, dict):
                raw, files = self._full_files(raw, entry)
            remote = OaiObject.from_wire(raw)
            oaio_id = remote.oaio_id
            owner = entry.get('owner') if isinstance(entry.get('owner'), str) else ''
            return self.apply_version(remote, check_manifest(files, remote.file_paths), owner)
        except (p.ProtocolError, InvalidServerData, OSError) as exc:
            self._error(f'refused server data for object {str(oaio_id)[:80]!r}: {exc}')
        except ServerError as exc:
            if exc.status >= 500:       # a passing server failure: abort the round before the cursor moves on
                raise
            self._error(f'could not fetch object {str(oaio_id)[:80]!r}: {exc}')
        return []

    def _full_files(self, raw: dict, entry: dict) -> tuple[dict, dict]:
        """A feed entry with files as a delta (``files_base``, ``files_delta``): the version's object
        dict with its ``_file_paths`` and its full manifest — the synced files plus the delta when
        this device has the version it is based on, else the whole list asked for."""
        base, delta = entry.get('files_base'), entry.get('files_delta')
        if not isinstance(delta, dict) or not isinstance(base, str):
            raise InvalidServerData('a feed entry has a malformed files delta')
        record = self.records.get(raw.get('oaio_id')) if isinstance(raw.get('oaio_id'), str) else None
        file_paths = entry.get('file_paths') is True
        if not base:
            files = {}
        elif record is not None and record.obj.server_stamp == base:
            files = copy.deepcopy(record.base_files)
        else:
            answer = self.api.manifest(p.check_oaio_id(raw.get('oaio_id')), p.check_stamp(raw.get('client_stamp')))
            if not isinstance(answer, dict) or not isinstance(answer.get('files'), dict):
                raise InvalidServerData('the file list of a version is malformed')
            files, delta, file_paths = answer['files'], {}, answer.get('file_paths') is True
        for path, file in delta.items():
            if file is None:
                files.pop(path, None)
            else:
                files[path] = file
        values = raw.get('client_values')
        if isinstance(values, dict) and (file_paths or files):
            values = {**values, p.FILE_PATHS_KEY: sorted(files)}
            raw = {**raw, 'client_values': values, 'server_values': values}
        return raw, files

    def _known_version(self, oaio_id: object, raw: object) -> bool:
        """Whether a feed entry is a version this device has already, with the right it has (e.g. its
        own upload coming back): nothing to apply, so its values and files are not checked."""
        if not isinstance(raw, dict):
            return False
        record = self.records.get(oaio_id) if isinstance(oaio_id, str) else None
        stamp = raw.get('client_stamp')
        return record is not None and isinstance(stamp, str) and len(stamp) == 20 and stamp.isdigit() \
            and bool(record.obj.server_stamp) and stamp <= record.obj.server_stamp \
            and raw.get('csh_access_right') == record.obj.csh_access_right

    def _forget_unlisted(self, entries: list) -> list[str]:
        """After a snapshot: synced objects it does not list are gone for this user."""
        listed = {entry['oaio']['oaio_id'] for entry in entries if isinstance(entry, dict)
                  and isinstance(entry.get('oaio'), dict) and 'oaio_id' in entry['oaio']}
        gone = [oaio_id for oaio_id, record in self.records.items()
                if record.obj.server_stamp and oaio_id not in listed]
        return [changed for oaio_id in gone for changed in self.apply_gone(oaio_id, 'unsubscribed')]

    def apply_gone(self, oaio_id: str, reason: str) -> list[str]:
        """A remote deletion or unsubscription; unsynced local edits survive it."""
        record = self.records.get(oaio_id)
        if record is None:
            return []
        if not record.obj.pending:
            del self.records[oaio_id]
            self.store.delete_record(oaio_id, wipe_files=not record.local_root)
            return [oaio_id]
        if reason == 'deleted':
            record.obj.server_stamp, record.obj.server_values, record.base_files = '', {}, {}
            record.obj.csh_access_right, record.blocked = p.CREATE_RIGHT, ''
            self._error(f'object {oaio_id!r} was deleted on the server; your unsynced changes are kept '
                        f'and registered again')
        else:
            record.blocked = 'no longer shared with you; your local changes are kept but not uploaded'
            self._error(f'object {oaio_id!r} is {record.blocked}')
        self.store.save_record(record)
        return [oaio_id]

    def apply_version(self, remote: OaiObject, manifest: dict, owner: str = '') -> list[str]:
        """Bring a remote version in: download, fast-forward, or merge with local edits."""
        record = self.records.get(remote.oaio_id)
        if record is None:
            record = ObjectRecord(obj=OaiObject(remote.oaio_id, csh_access_right=remote.csh_access_right))
        record.owner = owner[:150] or record.owner
        local = record.obj
        right_changed = local.csh_access_right != remote.csh_access_right
        local.csh_access_right = remote.csh_access_right
        if remote.client_stamp <= local.server_stamp:
            if right_changed:
                self._update_block(record)
                self.save_record(record)
            return [remote.oaio_id] if right_changed else []
        if local.client_stamp and (local.pending or self._files_modified(record)):
            self._merge(record, remote, manifest)
        else:
            self._fast_forward(record, remote, manifest)
        self._update_block(record)
        self.save_record(record)
        return [remote.oaio_id]

    def _files_modified(self, record: ObjectRecord) -> bool:
        """Did attached files change on disk since the last sync, without a new local version yet?
        (The mount writes files first and makes the version a moment later.)"""
        local = {path: entry['sha256'] for path, entry in self.local_manifest(record, strict=False).items()}
        return local != {path: entry['sha256'] for path, entry in record.base_files.items()}

    def _update_block(self, record: ObjectRecord) -> None:
        if record.obj.csh_access_right in p.WRITE_RIGHTS:
            record.blocked = ''
        elif record.obj.pending:
            record.blocked = f'your right is {record.obj.csh_access_right!r}: local changes are kept but not uploaded'
            self._error(f'object {record.obj.oaio_id!r}: {record.blocked}')

    def _fast_forward(self, record: ObjectRecord, remote: OaiObject, manifest: dict) -> None:
        current = {path: entry['sha256'] for path, entry in self.local_manifest(record, strict=False).items()}
        self._download_all(record, remote, {path: entry for path, entry in manifest.items()
                                            if current.get(path) != entry['sha256']})
        for path in set(record.base_files) - set(manifest):
            self._remove_file(record, path)
        self._adopt(record, remote, manifest)
        record.obj.client_stamp = remote.client_stamp
        record.obj.client_values = copy.deepcopy(remote.client_values)

    def _adopt(self, record: ObjectRecord, remote: OaiObject, manifest: dict) -> None:
        """Make ``remote`` the synced base of ``record``."""
        local = record.obj
        local.server_stamp = remote.client_stamp
        local.server_values = copy.deepcopy(remote.client_values)
        local.csh_id, local.username = remote.csh_id, remote.username
        local.device_id, local.app_id = remote.device_id, remote.app_id
        record.base_files = copy.deepcopy(manifest)

    def _merge(self, record: ObjectRecord, remote: OaiObject, manifest: dict) -> None:
        local = record.obj
        stamp = new_stamp(max(local.client_stamp, remote.client_stamp))
        mine = {path: entry['sha256'] for path, entry in self.local_manifest(record, strict=False).items()}
        files = merge_files({path: e['sha256'] for path, e in record.base_files.items()}, mine,
                            {path: e['sha256'] for path, e in manifest.items()}, self.device_id, stamp)
        for path, copy_path in files.conflicts.items():
            self._move_file(record, path, copy_path)
            self._conflict(f'object {local.oaio_id!r}: {path!r} changed on two devices; this device\'s version '
                           f'is kept as {copy_path!r}')
        self._download_all(record, remote, {path: manifest[path] for path in files.download})
        for path in files.remove:
            self._remove_file(record, path)
        values = merge_values(local.server_values, local.client_values, remote.client_values,
                              local_is_newer=local.client_stamp > remote.client_stamp)
        paths = files.paths
        if values.losers:
            losing_device = remote.device_id if local.client_stamp > remote.client_stamp else self.device_id
            paths = sorted(paths + [self._write_values_conflict(record, values.losers, losing_device, stamp)])
        if paths or p.FILE_PATHS_KEY in values.values:
            values.values[p.FILE_PATHS_KEY] = paths
        self._adopt(record, remote, manifest)
        local.client_values = values.values
        same_files = {path: e['sha256'] for path, e in manifest.items()} == {
            path: entry['sha256'] for path, entry in self.local_manifest(record, strict=False).items()}
        unchanged = same_value(values.values, remote.client_values) and same_files
        local.client_stamp = remote.client_stamp if unchanged else stamp

    def _write_values_conflict(self, record: ObjectRecord, losers: dict, device_id: str, stamp: str) -> str:
        """Keep the losing values of keys changed on two devices in an attached file named after the
        device they came from."""
        path = conflict_name(p.VALUES_FILE, device_id or 'device', stamp)
        write_atomic(self.store.file_path(record, path),
                     (json.dumps(losers, indent=2, sort_keys=True) + '\n').encode(), mode=0o644)
        self._conflict(f'object {record.obj.oaio_id!r}: values changed on two devices; the older ones are kept '
                       f'in {path!r}')
        return path

    # files ----------------------------------------------------------------------------------

    def local_manifest(self, record: ObjectRecord, strict: bool = True) -> dict:
        """``{path: {"sha256", "size"}}`` of the local files; unchanged files are not hashed again."""
        manifest = {}
        root = str(self.store.files_root(record))
        for path in record.obj.file_paths:
            entry = self.file_entry(record, path, root)
            if entry is None:
                if strict:
                    raise OaioError(f'attached file {path!r} of {record.obj.oaio_id!r} is missing')
                continue
            manifest[path] = entry
        return manifest

    def file_entry(self, record: ObjectRecord, path: str, root: str = '') -> dict | None:
        """``{"sha256", "size"}`` of one local file, plus ``"chunks"`` for a file of several chunks
        (hashed and cut only if its size or mtime changed since it was last hashed), None if it is
        missing. With ``root`` (the object's files root), ``path`` is one of its attached files,
        checked when it was attached: not checked again."""
        file = Path(f'{root}/{path}') if root else self.store.file_path(record, path)
        try:
            stat = os.stat(file)
        except FileNotFoundError:
            return None
        cached = record.hashes.get(path)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns \
                and (len(cached) > 3 or stat.st_size <= p.SINGLE_CHUNK_BYTES):
            sha256, chunks = cached[2], cached[3] if len(cached) > 3 else None
        else:
            sha256, _, chunks = hash_file(file)
            record.hashes[path] = [stat.st_size, stat.st_mtime_ns, sha256] + ([chunks] if chunks else [])
        entry = {'sha256': sha256, 'size': stat.st_size}
        if chunks:
            entry['chunks'] = chunks
        return entry

    def _download_all(self, record: ObjectRecord, remote: OaiObject, entries: dict) -> None:
        """Bring the files ``entries`` (``{path: manifest entry}``) of ``remote`` in.

        Chunks that intact local files of the synced version hold already are copied from them;
        the rest are fetched in packs, several requests at a time, each chunk verified. Every file
        is assembled in a temporary file, checked against its sha256 and size, made durable (one
        syncfs for all of them) and then renamed into place. After a failure, the files complete
        by then are placed and the first failure is raised."""
        if not entries:
            return
        assembly = _Assembly(self, record, entries)
        try:
            assembly.copy_local(self._local_sources(record, entries))
            assembly.fetch()
        finally:
            placed = assembly.place()
            for path, hashes in placed.items():
                record.hashes[path] = hashes

    def _local_sources(self, record: ObjectRecord, entries: dict) -> dict:
        """``{chunk sha256: (local file, offset)}`` for chunks of ``entries`` that files of the synced
        version hold, unchanged here (a chunked file edited in its middle keeps most of its chunks)."""
        wanted = {chunk[0] for entry in entries.values() if 'chunks' in entry for chunk in entry['chunks']}
        sources: dict = {}
        if not wanted:
            return sources
        for path, base in record.base_files.items():
            if 'chunks' not in base or not wanted.intersection(chunk[0] for chunk in base['chunks']):
                continue
            local = self.file_entry(record, path)
            if local is None or local['sha256'] != base['sha256']:
                continue
            offset = 0
            for digest, size in base['chunks']:
                sources.setdefault(digest, (self.store.file_path(record, path), offset))
                offset += size
        return sources

    def _report(self, direction: str, path: str, done: int, total: int) -> None:
        if self.on_progress:
            with self._progress_lock:
                self.on_progress(direction, path, done, total)

    def _remove_file(self, record: ObjectRecord, path: str) -> None:
        self.store.file_path(record, path).unlink(missing_ok=True)
        record.hashes.pop(path, None)

    def _move_file(self, record: ObjectRecord, path: str, new_path: str) -> None:
        target = self.store.file_path(record, new_path)
        make_private_dirs(target.parent)
        os.replace(self.store.file_path(record, path), target)
        record.hashes[new_path] = record.hashes.pop(path, None) or []

    # push -----------------------------------------------------------------------------------

    def push(self) -> None:
        """Upload every pending local version, oldest first; merge and retry on a conflict."""
        waiting = self._pending_records()
        for record in waiting:
            if record.blocked:
                self._conflict(f'object {record.obj.oaio_id!r}: uploads on hold: {record.blocked}')
        for round_ in range(PUSH_ROUNDS):
            if round_:                      # after a pull: look again
                waiting = self._pending_records()
            pending = sorted((r for r in waiting if not r.blocked), key=lambda r: (r.obj.client_stamp, r.obj.oaio_id))
            conflicts = 0
            for record in pending:
                conflicts += self._push_one(record)
            if not conflicts:
                return
            self.pull()
        self._error('objects kept changing on the server while uploading; will retry at the next sync')

    def _pending_records(self) -> list[ObjectRecord]:
        """The records with a local version to upload (ids of dropped or synced records are forgotten)."""
        records = [self.records.get(oaio_id) for oaio_id in self.pending_ids]
        waiting = [record for record in records if record is not None and record.obj.pending]
        self.pending_ids = {record.obj.oaio_id for record in waiting}
        return waiting

    def _push_one(self, record: ObjectRecord) -> int:
        """Upload one record; returns 1 on a conflict (after which the caller pulls and retries)."""
        oaio_id = record.obj.oaio_id
        try:
            self.upload(record)
        except ConflictError as exc:
            if not record.obj.server_stamp and 'head' not in exc.body:
                self.rejected.add(oaio_id)
                self._error(f'object {oaio_id!r} cannot be registered: {exc}')
                return 0
            return 1
        except AccessDenied as exc:
            record.blocked = str(exc)
            self.save_record(record)
            self._error(f'object {oaio_id!r}: uploads stopped, local changes kept: {exc}')
        except (OfflineError, AuthenticationError):
            raise
        except (OaioError, OSError) as exc:
            self._error(f'upload of {oaio_id!r} failed: {exc}')
        return 0

    def upload(self, record: ObjectRecord) -> None:
        """Register or upload one pending version: files the server lacks first, then the version."""
        snapshot = copy.deepcopy(record.obj)
        manifest = self.local_manifest(record)
        self.save_record(record)
        # the synced version's content is on the server and this user's to name: only new content is asked about
        synced = {entry['sha256'] for entry in record.base_files.values()}
        synced = {chunk[0] for entry in record.base_files.values() for chunk in chunking.pieces(entry)}
        where: dict[str, tuple[str, int, int]] = {}      # chunk sha256 → (path, offset, size)
        for path, entry in manifest.items():
            offset = 0
            for digest, size in chunking.pieces(entry):
                if digest not in synced:
                    where.setdefault(digest, (path, offset, size))
                offset += size
        missing = self.api.missing_blobs(sorted(where))
        self._send_packs(record, sorted((where[digest] + (digest,) for digest in missing)))
        declared = {path: entry if 'chunks' in entry else entry['sha256'] for path, entry in manifest.items()
                    if record.base_files.get(path) != entry}
        declared.update({path: None for path in record.base_files if path not in manifest})
        values = {key: value for key, value in snapshot.client_values.items() if key != p.FILE_PATHS_KEY}
        # only what changed against the synced version travels; the server derives _file_paths
        body = {**snapshot.to_dict(), 'client_values': values, 'server_values': {}, 'files_delta': declared}
        action = 'upload/' if snapshot.server_stamp else 'register/'
        answer = self.api.json('post', action, f'{action[:-1]} of {snapshot.oaio_id!r}', json=body)
        if not isinstance(answer, dict):
            raise p.ProtocolError(f'the answer to the {action[:-1]} of {snapshot.oaio_id!r} is no object')
        # only these fields of the answer are taken (its values are ours, sent a moment ago: checking
        # 10,000 file paths again took longer than the upload)
        record.obj.server_stamp = p.check_stamp(answer.get('client_stamp'), 'client_stamp')
        record.obj.server_values = copy.deepcopy(snapshot.client_values)
        record.obj.csh_access_right = p.check_access_right(answer.get('csh_access_right'), allow_none=False)
        record.obj.csh_id = answer.get('csh_id')
        record.base_files = manifest
        self.save_record(record)

    def _send_packs(self, record: ObjectRecord, chunks: list[tuple[str, int, int, str]]) -> None:
        """Upload ``chunks`` (path, offset, size, sha256), in file order, in packs of about
        PACK_BYTES, UPLOAD_THREADS packs at a time; each pack is read from the files as it is sent."""
        packs, pack, size = [], [], 0
        for chunk in chunks:
            if pack and size + chunk[2] > p.PACK_BYTES:
                packs.append(pack)
                pack, size = [], 0
            pack.append(chunk)
            size += chunk[2]
        if pack:
            packs.append(pack)
        root = self.store.files_root(record)
        what = f'upload of files of {record.obj.oaio_id!r}'
        try:
            if len(packs) <= 1:
                for pack in packs:
                    self.api.put_pack(self._pack_body(root, pack), what)
                return
            with ThreadPoolExecutor(min(UPLOAD_THREADS, len(packs)), thread_name_prefix='oaio-upload') as pool:
                sends = [pool.submit(self.api.put_pack, self._pack_body(root, pack), what) for pack in packs]
                wait(sends, return_when=FIRST_EXCEPTION)
                for send in sends:
                    send.cancel()
            failed = [send.exception() for send in sends if not send.cancelled() and send.exception()]
            if failed:
                raise failed[0]
        except ServerError as exc:
            # the server hashes every chunk: one that no longer matches the hash taken a moment ago is a
            # file written to while it went up (the bytes are read as they are sent, never copied first)
            if exc.status == 400 and 'does not match its bytes' in str(exc):
                raise OaioError(f'a file of {record.obj.oaio_id!r} changed while it was uploaded; it goes up '
                                'again at the next sync') from None
            raise

    def _pack_body(self, root: Path, pack: list[tuple[str, int, int, str]]):
        """The body of one pack, read from the files as it is sent (never a whole pack in memory)."""
        for path, offset, size, digest in pack:
            with open(root / path, 'rb') as file:
                file.seek(offset)
                data = file.read(size)
            if len(data) != size:
                raise OaioError(f'attached file {path!r} changed while it was uploaded')
            self._report('up', path, offset + size, offset + size)
            yield p.pack_header(digest, size) + data

    def push_deletes(self) -> None:
        """Send the queued unregistrations; an object already gone counts as deleted."""
        for oaio_id in list(self.state['pending_deletes']):
            try:
                self.api.request('post', 'delete/', f'deletion of {oaio_id!r}', json={'oaio_id': oaio_id})
            except AccessDenied as exc:
                if exc.status != 404:
                    self._error(f'deletion of {oaio_id!r} refused: {exc}')
            self.state['pending_deletes'].remove(oaio_id)
            self.store.save_state(self.state)

    # helpers --------------------------------------------------------------------------------

    def save_record(self, record: ObjectRecord) -> None:
        """Keep ``record`` in memory and durably in the store."""
        self.records[record.obj.oaio_id] = record
        if record.obj.pending:
            self.pending_ids.add(record.obj.oaio_id)
        self.store.save_record(record)

    def _conflict(self, message: str) -> None:
        log.info('%s', message)
        self.notices.append(message)

    def _error(self, message: str) -> None:
        log.warning('%s', message)
        self.errors.append(message)
