"""The local store under ``client_root``: object infos, attached files, sync state, pending deletes.

Layout (every file written atomically: temp file, fsync, rename, fsync of the directory):

- ``.lock``                 held (flock) by the one client using this root
- ``objz/<oaio_id>.json``   one object's record (see :class:`ObjectRecord`)
- ``filez/<oaio_id>/…``     attached files of objects without a local root of their own
- ``state.json``            ``cursor`` of the change feed and ``pending_deletes`` (the journal of
                            unregistrations not yet sent)
- ``last_sync_stamp.txt``   stamp of the last complete synchronization
- ``tmp/``                  downloads in progress; emptied at every start

A crash at any instant leaves each file in its old or its new state. An object record is
written after its files, so a record never names content that is not on disk.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol as p
from .errors import StoreLockedError
from .model import OaiObject

OBJECTS_DIR = 'objz'
FILES_DIR = p.FILES_FOLDER
LAST_SYNC_STAMP_FILE = 'last_sync_stamp.txt'
STATE_FILE = 'state.json'
PARTIAL_DIR = 'partial'         # big downloads in progress, kept across restarts (see partial_file)
PARTIAL_DAYS = 7


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` whose new directories are 0700 (the cache is private to its user)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        os.chmod(directory, 0o700)      # mkdir's mode is masked by the umask; 0700 needs no more


def folder_files(folder: Path, skip=None) -> list[str]:
    """Relative paths of the regular files under ``folder`` (symbolic links and, with ``skip``, the
    paths it is true for left out), sorted: the one walk of an attached folder."""
    found = []
    pending = ['']
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(folder / prefix if prefix else folder) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            path = f'{prefix}/{entry.name}' if prefix else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append(path)
            elif entry.is_file(follow_symlinks=False) and not (skip and skip(path)):
                found.append(path)
    return sorted(found)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content."""
    make_private_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.tmp-')
    try:
        with os.fdopen(fd, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_directory(path.parent)


@dataclass
class ObjectRecord:
    """What the store keeps of one object.

    ``base_files``: manifest ``{path: {"sha256", "size"}}`` of the server version ``obj.server_stamp``.
    ``hashes``: ``{path: [size, mtime_ns, sha256]}``, so unchanged local files are not hashed again.
    ``local_root``: the folder of the files on this device when the user chose one (register_folder).
    ``blocked``: why uploads of this object stopped (e.g. the right was lost), or ``''``.
    ``owner``: the user who registered the object (from the change feed).
    """

    obj: OaiObject
    base_files: dict = field(default_factory=dict)
    hashes: dict = field(default_factory=dict)
    local_root: str = ''
    blocked: str = ''
    owner: str = ''

    def to_json(self) -> bytes:
        # compact: json's C encoder does not indent, and a record of 10,000 files indented took its
        # pure-Python one 0.3 s -- at every save
        return json.dumps({'object': self.obj.to_dict(), 'base_files': self.base_files, 'hashes': self.hashes,
                           'local_root': self.local_root, 'blocked': self.blocked, 'owner': self.owner},
                          separators=(',', ':')).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ObjectRecord:
        raw = json.loads(data)
        return cls(obj=OaiObject(**raw['object']), base_files=raw.get('base_files', {}),
                   hashes=raw.get('hashes', {}), local_root=raw.get('local_root', ''), blocked=raw.get('blocked', ''),
                   owner=raw.get('owner', ''))


class LocalStore:
    """The on-disk cache of one user's objects; exclusive to one client at a time."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for sub in (OBJECTS_DIR, FILES_DIR, 'tmp'):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        self._lock_fd = os.open(self.root / '.lock', os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLockedError(f'{self.root} is in use by another oaio client') from None
        shutil.rmtree(self.root / 'tmp', ignore_errors=True)
        (self.root / 'tmp').mkdir(mode=0o700)
        (self.root / PARTIAL_DIR).mkdir(exist_ok=True, mode=0o700)
        for part in (self.root / PARTIAL_DIR).iterdir():     # downloads abandoned long ago
            with contextlib.suppress(FileNotFoundError):
                if time.time() - part.stat().st_mtime > PARTIAL_DAYS * 86400:
                    part.unlink()
        for stale in [*self.root.glob('.tmp-*'), *(self.root / OBJECTS_DIR).glob('.tmp-*')]:
            stale.unlink(missing_ok=True)       # left by a write_atomic() that a crash interrupted

    def close(self) -> None:
        """Release the lock."""
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # object records ------------------------------------------------------------------------

    def _record_path(self, oaio_id: str) -> Path:
        name = p.check_oaio_id(oaio_id)
        if len(name.encode()) > p.MAX_NAME_BYTES - len('.json'):
            # a valid id may use all of a file name's bytes; the record file is found by its content
            # (load_records), so a shortened, hash-made-unique name does
            name = name.encode()[:160].decode('utf-8', 'ignore') + '-' + hashlib.sha256(name.encode()).hexdigest()[:32]
        return self.root / OBJECTS_DIR / (name + '.json')

    def load_records(self) -> dict[str, ObjectRecord]:
        """Every object record; a record that cannot be read is moved aside, not lost."""
        records = {}
        for path in sorted((self.root / OBJECTS_DIR).glob('*.json')):
            try:
                record = ObjectRecord.from_json(path.read_bytes())
            except (ValueError, KeyError, TypeError):
                path.rename(path.with_suffix('.unreadable'))
                continue
            records[record.obj.oaio_id] = record
        return records

    def save_record(self, record: ObjectRecord) -> None:
        write_atomic(self._record_path(record.obj.oaio_id), record.to_json())

    def delete_record(self, oaio_id: str, wipe_files: bool = True) -> None:
        path = self._record_path(oaio_id)
        if path.exists():
            path.unlink()
            fsync_directory(path.parent)
        if wipe_files:
            shutil.rmtree(self.root / FILES_DIR / oaio_id, ignore_errors=True)

    def files_root(self, record: ObjectRecord) -> Path:
        """The folder holding the object's attached files on this device."""
        return Path(record.local_root) if record.local_root else self.root / FILES_DIR / record.obj.oaio_id

    def file_path(self, record: ObjectRecord, relative: str) -> Path:
        """The local path of an attached file; ``relative`` is validated, so it stays inside its root."""
        return self.files_root(record) / p.check_relative_path(relative)

    def partial_file(self, sha256: str, path: str) -> Path:
        """Where a big file's download is assembled: it survives a crash or a lost connection, so the
        next attempt fetches only the chunks it lacks (they are verified, not trusted)."""
        key = hashlib.sha256(f'{sha256}\0{path}'.encode('utf-8', 'surrogatepass')).hexdigest()[:40]
        return self.root / PARTIAL_DIR / f'part-{key}'

    def temp_file(self) -> tuple[int, str]:
        """A new temporary file for a download (fd, path), on the same filesystem as the cache."""
        return tempfile.mkstemp(dir=self.root / 'tmp', prefix='dl-')

    # sync state ----------------------------------------------------------------------------

    def load_state(self) -> dict:
        path = self.root / STATE_FILE
        try:
            state = json.loads(path.read_bytes())
        except FileNotFoundError:
            state = {}
        except ValueError:
            path.rename(path.with_suffix('.unreadable'))
            state = {}
        return {'cursor': state.get('cursor', ''), 'pending_deletes': list(state.get('pending_deletes', []))}

    def save_state(self, state: dict) -> None:
        write_atomic(self.root / STATE_FILE, json.dumps(state).encode())

    @property
    def last_sync_stamp(self) -> str:
        try:
            return (self.root / LAST_SYNC_STAMP_FILE).read_text().strip()
        except FileNotFoundError:
            return ''

    @last_sync_stamp.setter
    def last_sync_stamp(self, stamp: str) -> None:
        write_atomic(self.root / LAST_SYNC_STAMP_FILE, stamp.encode())
