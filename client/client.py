"""``OaioClient``: the public API of the original client library, offline-first.

Every change is first made durable in the local store, then (with ``auto_sync``, the original's
behaviour) synchronized at once if the server is reachable. Server and network failures are
reported through return values (``None``/``False``/``''``/``0``) and :attr:`OaioClient.error_message`;
invalid arguments raise :class:`~oaio.client.protocol.ProtocolError` (a ValueError and an
AssertionError).
"""
from __future__ import annotations

import copy
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import quote

from . import protocol as p
from .api import ServerApi
from .errors import AccessDenied, InvalidServerData, OaioError, OfflineError, refined
from .model import MANAGED_KEYS, OaiObject, object_id, user_values
from .store import LAST_SYNC_STAMP_FILE, LocalStore, ObjectRecord, folder_files, make_private_dirs
from .sync import SyncEngine, new_stamp

__all__ = ['OaioClient', 'LAST_SYNC_STAMP_FILE', 'DEFAULT_STORAGE_HOST']

DEFAULT_STORAGE_HOST = 'oaio'     # the oaio server itself (the original defaults to the external host 'Digi')


def placeholders() -> dict[str, str]:
    """Path placeholders accepted in ``client_root`` and root paths, as in the original client."""
    home = os.path.expanduser('~')
    return {'usr': os.environ.get('XDG_DATA_HOME') or os.path.join(home, '.local', 'share'),
            'home': home, 'cwd': os.getcwd()}


def expand_path(path: str) -> str:
    """Replace ``{usr}``, ``{home}``, ``{cwd}`` and ``~`` in ``path``; return it absolute."""
    for name, value in placeholders().items():
        path = path.replace('{' + name + '}', value)
    return os.path.abspath(os.path.expanduser(path))


def _check_id_arg(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise p.ProtocolError(f'{what} must be a string')
    return p.check_name(value, what) if value else value


class OaioClient:
    """Create, update, share and delete a user's oai objects, cached in ``client_root`` and
    synchronized with the oaio server at ``host``.

    Use it as a context manager (or call :meth:`close`) to log out and release ``client_root``.
    """

    def __init__(self, host: str, credentials: dict[str, str], app_id: str = '', device_id: str = '',
                 csh_default_id: str = DEFAULT_STORAGE_HOST, client_root: str = '{usr}/oaio_root/',
                 auto_sync: bool = True, ignore_file: Callable[[str], bool] | None = None):
        """Open the local store in ``client_root`` (exclusively) and prepare the server session.

        :param host: ``host[:port]`` (plain http only for localhost, 127.0.0.0/8 and ::1, else https) or a full URL.
        :param credentials: ``{'username': …, 'password': …}``.
        :param app_id: id of the app; defaults to the program's name.
        :param device_id: id of this device; defaults to the host name.
        :param csh_default_id: storage host of new objects' files; defaults to the oaio server itself.
        :param client_root: cache folder; ``{usr}``, ``{home}``, ``{cwd}`` and ``~`` are expanded.
        :param auto_sync: synchronize after every change, as the original does; the mount turns it off
            and runs its own sync task.
        :param ignore_file: true for the relative paths of files never to attach (the mount's editor
            temp files); folder scans leave them out.
        """
        if not isinstance(credentials, dict) or not isinstance(credentials.get('username'), str) \
                or not credentials['username'] or not isinstance(credentials.get('password'), str):
            raise p.ProtocolError("credentials must be a dict with the keys 'username' and 'password'")
        self.user_name = credentials['username']
        self.app_id = _check_id_arg(app_id, 'app_id') or Path(sys.argv[0] or 'python').stem or 'python'
        self.device_id = _check_id_arg(device_id, 'device_id') or socket.gethostname()
        self.csh_default_id = p.check_csh_id(csh_default_id)
        self.client_root = expand_path(client_root)
        self.auto_sync = auto_sync
        self._ignore_file = ignore_file
        self._error_message = ''
        self._lock = threading.RLock()
        self._store = LocalStore(self.client_root)
        self._api = ServerApi(host, self.user_name, credentials['password'], self.device_id, self.app_id)
        self._engine = SyncEngine(self._store, self._api, self.device_id)
        self._watch_api: ServerApi | None = None          # the long poll's session
        self._side_api: ServerApi | None = None           # sharing's session (see share)
        self._side_lock = threading.Lock()
        self.online = False         # did the last contact with the server succeed?

    # lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Log out, close the HTTP sessions and release ``client_root``."""
        with self._lock, self._side_lock:
            for api in (self._api, self._watch_api, self._side_api):
                if api is not None:
                    api.close()
            self._store.close()

    def __enter__(self) -> OaioClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # state ----------------------------------------------------------------------------------

    @property
    def error_message(self) -> str:
        """Accumulated error messages since the last reset; assign ``''`` to reset, any other
        text to append it."""
        return self._error_message

    @error_message.setter
    def error_message(self, message: str) -> None:
        self._error_message = f'{self._error_message}\n{message}' if message and self._error_message else message

    @property
    def client_objectz(self) -> dict[str, OaiObject]:
        """The objects in the local store, by id (copies: change them through the methods)."""
        with self._lock:
            return {oaio_id: copy.deepcopy(record.obj) for oaio_id, record in self._engine.records.items()}

    @property
    def last_sync_stamp(self) -> str:
        """Stamp of the last complete synchronization ('' before the first)."""
        return self._store.last_sync_stamp

    @last_sync_stamp.setter
    def last_sync_stamp(self, stamp: str) -> None:
        self._store.last_sync_stamp = p.check_stamp(stamp)

    def files_root(self, oaio_id: str) -> Path:
        """The local folder of an object's attached files."""
        return self._store.files_root(self._record(oaio_id))

    @property
    def server_url(self) -> str:
        """The API URL of the server."""
        return self._api.url

    def report_progress(self, handler) -> None:
        """Call ``handler(direction, path, done_bytes, total_bytes)`` while files transfer
        (direction ``up`` or ``down``); None stops it."""
        self._engine.on_progress = handler

    def report_applied(self, handler) -> None:
        """Call ``handler(oaio_ids)`` as soon as a pulled change is applied to these objects (from the
        syncing thread, with the client's lock held: it may read the client); None stops it."""
        self._engine.on_applied = handler

    def default_files_root(self, oaio_id: str) -> Path:
        """Where the files of a new object without a root of its own will live (no lock taken)."""
        return Path(self.client_root) / p.FILES_FOLDER / p.check_oaio_id(oaio_id)

    def object(self, oaio_id: str) -> OaiObject | None:
        """A copy of one object of the local store, or None."""
        with self._lock:
            record = self._engine.records.get(oaio_id)
            return copy.deepcopy(record.obj) if record else None

    # files changed from outside ---------------------------------------------------------------
    # Whoever writes an object's files in place (the mount) says which paths it changed; the
    # client then looks at those paths only, never walks the object, and hashes only files whose
    # size or mtime changed. A path may name a file or a folder (then every file under it).

    def note_changed(self, oaio_id: str, path: str) -> bool:
        """The file or folder at ``path`` was written, created or removed: take what is there now (a
        file, every file under a folder, nothing if it is gone). True if a new local version was made."""
        return self.take_file_changes(oaio_id, [path])

    def note_removed(self, oaio_id: str, path: str) -> bool:
        """The file or folder at ``path`` is gone: detach it (every file under a folder)."""
        return self.take_file_changes(oaio_id, [path])

    def note_renamed(self, oaio_id: str, old: str, new: str) -> bool:
        """A file or folder moved from ``old`` to ``new`` within the object: its files keep their
        hashes (none is hashed again unless its content changed too)."""
        return self.take_file_changes(oaio_id, [old, new], renamed=[(old, new)])

    def take_file_changes(self, oaio_id: str, paths: list[str], renamed: list[tuple[str, str]] = ()) -> bool:
        """A batch of the above: ``renamed`` moves (old, new), in the order they happened, ``paths``
        every path changed, created, removed or renamed from or to (checked on disk as they are now).
        Makes one new local version if the attached files or their contents changed; True if it did."""
        with self._lock:
            record = self._record(oaio_id)
            for old, new in renamed:
                _move_hashes(record.hashes, p.check_relative_path(old), p.check_relative_path(new))
            known = record.obj.file_paths
            files = set(known)
            changed = False
            for path in dict.fromkeys(paths):
                changed |= self._take_path(record, files, p.check_relative_path(path))
            if not changed:
                return False
            for path in files.difference(known):        # the others were checked when they came
                p.check_relative_path(path)
            self._new_file_list(record, sorted(files))
            return True

    def rescan_files(self, oaio_id: str) -> bool:
        """Walk the whole files folder of the object and take what changed (for changes nobody
        noted, e.g. of a mount that was killed). True if a new local version was made."""
        with self._lock:
            record = self._record(oaio_id)
            now = set(folder_files(self._store.files_root(record), self._ignore_file))
            if not self._take_files(record, set(record.obj.file_paths), now):
                return False
            self._new_file_list(record, p.check_file_paths(sorted(now)))
            return True

    def _new_file_list(self, record: ObjectRecord, paths: list[str]) -> None:
        """A new local version with the attached files ``paths`` (checked by the caller: the full
        check of update_object costs more than the rest of a one-file change of a big object)."""
        self._check_writable(record)
        if len(paths) > p.MAX_FILE_PATHS:
            raise p.ProtocolError(f'{p.FILE_PATHS_KEY} lists {len(paths)} paths, the limit is {p.MAX_FILE_PATHS}')
        record.obj.client_values = {**record.obj.client_values, p.FILE_PATHS_KEY: paths}
        record.obj.client_stamp = new_stamp(record.obj.client_stamp)
        self._engine.save_record(record)
        self._after_change()

    def _take_path(self, record: ObjectRecord, files: set[str], path: str) -> bool:
        """Bring ``files`` up to date at ``path``; whether anything there changed."""
        full = self._store.file_path(record, path)
        now: set[str] = set()
        if full.is_dir() and not full.is_symlink():
            now = {f'{path}/{inner}' for inner in folder_files(full, self._ignore_file_under(path))}
        elif full.is_file() and not full.is_symlink() and not (self._ignore_file and self._ignore_file(path)):
            now = {path}
        if path in files or now == {path}:
            before = {path} & files
        else:                                   # a folder (or what was one): the files under it
            inside = path + '/'
            before = {known for known in files if known.startswith(inside)}
        files.difference_update(before)
        files.update(now)
        return self._take_files(record, before, now)

    def _take_files(self, record: ObjectRecord, before: set[str], now: set[str]) -> bool:
        """Whether going from the attached files ``before`` to the files on disk ``now`` is a change:
        other paths, or content other than last hashed or (with no version pending) than synced."""
        if before != now:
            for path in now:
                self._engine.file_entry(record, path)       # hashed while the lock is held anyway
            return True
        changed = False
        for path in now:
            known = (record.hashes.get(path) or [None] * 3)[2]
            entry = self._engine.file_entry(record, path)
            synced = (record.base_files.get(path) or {}).get('sha256')
            if entry is None or entry['sha256'] != known or (not record.obj.pending and entry['sha256'] != synced):
                changed = True
        return changed

    def _ignore_file_under(self, folder: str):
        ignore = self._ignore_file
        return (lambda inner: ignore(f'{folder}/{inner}')) if ignore else None

    def replace_values(self, oaio_id: str, values: dict, stamp: str = '') -> OaiObject:
        """Make ``values`` the object's values, except the keys the client manages itself
        (:data:`~oaio.client.model.MANAGED_KEYS`), which keep theirs whatever ``values`` holds."""
        with self._lock:
            current = self._record(oaio_id).obj.client_values
            kept = {key: current[key] for key in MANAGED_KEYS if key in current}
            return self.update_object(oaio_id, user_values(values) | kept, stamp=stamp, reset=True)

    def owner_of(self, oaio_id: str) -> str:
        """The user who registered the object ('' if not known yet)."""
        with self._lock:
            return self._record(oaio_id).owner

    def unsynced_files(self, oaio_id: str) -> list[str]:
        """The paths whose content here is not the synced version's (changed, new or removed; as last
        hashed), for an object with a local version not uploaded yet; [] for the others."""
        with self._lock:
            record = self._record(oaio_id)
            if not record.obj.pending:
                return []
            synced = {path: entry['sha256'] for path, entry in record.base_files.items()}
            here = {path: (record.hashes.get(path) or [None] * 3)[2] for path in record.obj.file_paths}
            return sorted(path for path in synced.keys() | here.keys() if synced.get(path) != here.get(path))

    def sync_state(self, oaio_id: str) -> str:
        """``synced``, ``pending`` or ``error`` (uploads blocked) for one object."""
        record = self._record(oaio_id)
        return 'error' if record.blocked else 'pending' if record.obj.pending else 'synced'

    # sync -----------------------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (the other methods do it when needed); raises AuthenticationError or OfflineError."""
        with self._lock:
            self._api.login()

    def synchronize_with_server_if_online(self) -> bool:
        """Send local changes and fetch remote ones; False if offline or on any sync error."""
        with self._lock:
            self.error_message = ''
            try:
                self._engine.sync()
            except OaioError as exc:
                self.online = not isinstance(exc, OfflineError)
                self.error_message = str(exc)
                return False
            self.online = True
            for message in self._engine.notices + self._engine.errors:
                self.error_message = message
            return not self._engine.errors

    def wait_for_remote_changes(self, timeout: float = 30.0) -> list[str]:
        """Long-poll the server for up to ``timeout`` seconds; apply what changed and return the
        changed object ids ([] on timeout). Raises OfflineError/AuthenticationError."""
        news = self.wait_for_news(timeout)
        return self.apply_news(news) if news is not None else []

    def wait_for_news(self, timeout: float = 30.0, since: str = '') -> dict | None:
        """Long-poll the change feed for up to ``timeout`` seconds, applying nothing: what changed,
        for :meth:`apply_news`, or None. ``since``: the cursor of news found before and maybe not
        applied yet (it is not found again). The lock is held only to read the cursor, not while
        waiting. Raises OfflineError/AuthenticationError."""
        with self._lock:
            cursor = self._engine.state['cursor']
            if since.isdigit() and int(since) > int(cursor or 0):
                cursor = since
            if self._watch_api is None:
                self._watch_api = ServerApi(self._api.url, self.user_name, self._api._password,
                                            self.device_id, self.app_id)
        answer = self._watch_api.changes(cursor, wait=timeout)
        if not answer.get('changes') and answer.get('cursor') == cursor:
            return None
        return {'since': cursor, 'answer': answer}

    def apply_news(self, news: dict) -> list[str]:
        """Apply what :meth:`wait_for_news` found (or, if a sync moved the cursor meanwhile, what
        changed since); the ids of the objects that changed."""
        with self._lock:
            errors = len(self._engine.errors)
            changed = self._engine.pull(None if self._engine.state['cursor'] != news['since'] else news['answer'])
            if len(self._engine.errors) == errors:      # all taken: as up to date as after a sync
                self._store.last_sync_stamp = p.now_stamp()
            return changed

    def _after_change(self) -> None:
        if self.auto_sync:
            self.synchronize_with_server_if_online()

    # registering ----------------------------------------------------------------------------

    def register_object(self, values: dict, stamp: str = '', oaio_id: str = '', csh_id: str = '',
                        local_root: str = '') -> Optional[OaiObject]:
        """Register a new object with ``values``; None if the server refuses its id (see error_message).

        Offline, the object is registered locally and sent at the next sync.
        """
        p.check_values(values)
        stamp = p.check_stamp(stamp) if stamp else p.now_stamp()
        oaio_id = oaio_id or object_id(self.user_name, self.device_id, self.app_id, stamp, values)
        p.check_oaio_id(oaio_id)
        with self._lock:
            if oaio_id in self._engine.records:
                raise p.ProtocolError(f'register_object(): {oaio_id!r} is registered already')
            obj = OaiObject(oaio_id=oaio_id, client_stamp=stamp, client_values=copy.deepcopy(values),
                            csh_id=p.check_csh_id(csh_id) if csh_id else self.csh_default_id,
                            username=self.user_name, device_id=self.device_id, app_id=self.app_id,
                            csh_access_right=p.CREATE_RIGHT)
            self._engine.save_record(ObjectRecord(obj=obj, local_root=local_root, owner=self.user_name))
            self._after_change()
            if oaio_id in self._engine.rejected:
                self._engine.rejected.discard(oaio_id)
                self._drop_local(oaio_id, wipe_files=False)
                return None
            return copy.deepcopy(self._engine.records[oaio_id].obj)

    def register_file(self, file_name: str, file_content: Optional[bytes] = None, root_path: str = '',
                      stamp: str = '', csh_id: str = '') -> Optional[OaiObject]:
        """Register a new object with one attached file (created from ``file_content`` if given)."""
        p.check_relative_path(file_name, 'file_name')
        stamp = p.check_stamp(stamp) if stamp else p.now_stamp()
        values: dict = {p.FILE_PATHS_KEY: [file_name]}
        if root_path:
            values[p.ROOT_PATH_KEY] = root_path
            folder = Path(expand_path(root_path))
        else:
            oaio_id = object_id(self.user_name, self.device_id, self.app_id, stamp, values)
            folder = Path(self.client_root) / p.FILES_FOLDER / oaio_id
        self._provide_file(folder / file_name, file_content)
        if root_path:
            return self.register_object(values, stamp=stamp, csh_id=csh_id, local_root=str(folder))
        return self.register_object(values, stamp=stamp, oaio_id=oaio_id, csh_id=csh_id)

    def register_folder(self, root_path: str, stamp: str = '', csh_id: str = '') -> Optional[OaiObject]:
        """Register a new object holding every file under ``root_path``."""
        folder = Path(expand_path(root_path))
        if not folder.is_dir():
            raise p.ProtocolError(f'register_folder(): {root_path!r} is not a folder')
        values = {p.ROOT_PATH_KEY: root_path, p.FILE_PATHS_KEY: folder_files(folder, self._ignore_file)}
        return self.register_object(values, stamp=stamp, csh_id=csh_id, local_root=str(folder))

    # updating -------------------------------------------------------------------------------

    def update_object(self, oaio_id: str, values: dict, stamp: str = '', reset: bool = False) -> OaiObject:
        """Change an object's values (merged into the current ones, or replacing them with ``reset``)."""
        p.check_values(values)
        with self._lock:
            record = self._record(oaio_id)
            self._check_writable(record)
            stamp = p.check_stamp(stamp) if stamp else new_stamp(record.obj.client_stamp)
            if stamp <= record.obj.client_stamp:
                raise p.ProtocolError(f'update_object(): stamp {stamp} is not newer than {record.obj.client_stamp}')
            new_values = {} if reset else copy.deepcopy(record.obj.client_values)
            new_values.update(copy.deepcopy(values))
            p.check_values(new_values)
            record.obj.client_values, record.obj.client_stamp = new_values, stamp
            self._engine.save_record(record)
            self._after_change()
            return copy.deepcopy(record.obj)

    def update_file(self, oaio_id: str, file_name: str = '', file_content: Optional[bytes] = None,
                    root_path: str = '', stamp: str = '') -> OaiObject:
        """Replace the attached file of a file object (``file_name`` renames/replaces it)."""
        with self._lock:
            record = self._record(oaio_id)
            self._check_writable(record)                # refuse before the local file is overwritten
            if stamp and p.check_stamp(stamp) <= record.obj.client_stamp:
                raise p.ProtocolError(f'update_file(): stamp {stamp} is not newer than {record.obj.client_stamp}')
            values = copy.deepcopy(record.obj.client_values)
            if file_name:
                values[p.FILE_PATHS_KEY] = [p.check_relative_path(file_name, 'file_name')]
            elif not values.get(p.FILE_PATHS_KEY):
                raise p.ProtocolError(f'update_file(): {oaio_id!r} has no attached file; pass file_name')
            if root_path:
                values[p.ROOT_PATH_KEY] = root_path
                record.local_root = expand_path(root_path)
            self._provide_file(self._store.file_path(record, _main_file(values[p.FILE_PATHS_KEY])), file_content)
            return self.update_object(oaio_id, values, stamp=stamp, reset=True)

    def update_folder(self, oaio_id: str, root_path: str = '', stamp: str = '') -> OaiObject:
        """Take the current files of a folder object (optionally from a new ``root_path``)."""
        with self._lock:
            record = self._record(oaio_id)
            self._check_writable(record)                # before local_root changes
            if root_path:
                record.local_root = expand_path(root_path)
            values = {p.FILE_PATHS_KEY: folder_files(self._store.files_root(record), self._ignore_file)}
            if root_path:
                values[p.ROOT_PATH_KEY] = root_path
            return self.update_object(oaio_id, values, stamp=stamp)

    # deleting and sharing -------------------------------------------------------------------

    def unregister_object(self, oaio_id: str, wipe_files: bool = False) -> str:
        """Delete an object on the server (rights D and C) and here; '' on success, else the error.

        Offline, the deletion is queued durably and sent at the next sync.
        """
        with self._lock:
            self.error_message = ''
            record = self._engine.records.get(oaio_id)
            if record is None:
                self.error_message = f'client object {oaio_id!r} to unregister not found'
                return self.error_message
            if record.obj.server_stamp and record.obj.csh_access_right not in p.DELETE_RIGHTS:
                self.error_message = (f'your right {record.obj.csh_access_right!r} does not allow to delete '
                                      f'{oaio_id!r}; unsubscribe instead')
                return self.error_message
            if record.obj.server_stamp:
                self._engine.state['pending_deletes'].append(oaio_id)
                self._store.save_state(self._engine.state)
            if wipe_files and record.local_root:        # only the attached files: the folder is the user's
                for path in record.obj.file_paths:
                    self._store.file_path(record, path).unlink(missing_ok=True)
            self._drop_local(oaio_id, wipe_files or not record.local_root)
            self._after_change()
            return '' if not self.online else self.error_message     # offline: queued, error_message says so

    def unsubscribe(self, oaio_id: str, user_name: str) -> str:
        """Remove ``user_name``'s subscription of ``oaio_id``; '' on success, else the error."""
        return '' if self._subscribe(oaio_id, user_name, p.NO_RIGHT) is not None else self.error_message

    def upsert_subscription(self, oaio_id: str, user_name: str, access_right: str = p.READ_RIGHT) -> int:
        """Share ``oaio_id`` with ``user_name`` (or change or, with 'x', remove the right); returns the
        subscription id, 0 on error."""
        return self._subscribe(oaio_id, user_name, p.check_access_right(access_right)) or 0

    def _subscribe(self, oaio_id: str, user_name: str, right: str) -> Optional[int]:
        self.error_message = ''
        try:
            subscription = self.share(oaio_id, user_name, right)
        except OaioError as exc:
            self.error_message = str(exc)
            return None
        if right == p.NO_RIGHT and user_name == self.user_name:
            with self._lock:
                if oaio_id in self._engine.records:
                    self._drop_local(oaio_id, wipe_files=not self._engine.records[oaio_id].local_root)
        return subscription

    def userz_access(self, oaio_id: str) -> list[dict[str, str]]:
        """Users and their rights for ``oaio_id`` (sorted: C, D, U, r, then name); for an unknown id
        every user with 'x'; [] on error."""
        try:
            return self.access_list(oaio_id)
        except OaioError as exc:
            self.error_message = str(exc)
            return []

    # sharing, raising ---------------------------------------------------------------------------
    # These ask the server at once, on a session of their own and without the client's lock, so they
    # never wait for a sync (the mount's extended attributes call them from a handler).

    def share(self, oaio_id: str, user_name: str, right: str) -> int:
        """Give ``user_name`` the ``right`` to ``oaio_id`` ('x' removes it; one's own 'x' unsubscribes: the
        next sync drops the object here); returns the subscription id. Raises :class:`OaioError` subclasses:
        :class:`AccessDenied` (403), :class:`NotFound` (404), :class:`OfflineError`, …"""
        p.check_oaio_id(oaio_id)
        p.check_access_right(right)
        if not isinstance(user_name, str) or not user_name:
            raise p.ProtocolError('user_name must be a non-empty string')
        answer = self._side_request('post', 'subscribe/', f'subscription of {user_name!r} to {oaio_id!r}',
                                    json={'oaio_id': oaio_id, 'username': user_name, 'access_right': right})
        return answer.get('Pid', 0) if isinstance(answer, dict) else 0

    def access_list(self, oaio_id: str) -> list[dict[str, str]]:
        """The users of ``oaio_id`` with their rights, sorted (C, D, U, r, then name); raises like :meth:`share`."""
        if oaio_id:
            p.check_oaio_id(oaio_id)
        slug = 'user_subz/' + quote(oaio_id or '_not__existing__oaio_id_', safe='')
        answer = self._side_request('get', slug, f'access list of {oaio_id!r}')
        if not isinstance(answer, list):
            raise InvalidServerData(f'access list of {oaio_id!r}: the server sent no list')
        order = {right: index for index, right in enumerate(p.ACCESS_RIGHTS + (p.NO_RIGHT,))}
        return sorted(answer, key=lambda row: (order.get(row.get('access_right'), 9), row.get('username', '')))

    def _side_request(self, method: str, slug: str, what: str, **kwargs):
        with self._side_lock:
            if self._side_api is None:
                self._side_api = ServerApi(self._api.url, self.user_name, self._api._password, self.device_id,
                                           self.app_id)
            try:
                return self._side_api.json(method, slug, what, **kwargs)
            except OaioError as exc:
                raise refined(exc) from None

    def wipe_user(self, user_name: str) -> str:
        """Delete a user with all their objects and subscriptions (oneself, or as staff)."""
        with self._lock:
            self.error_message = ''
            if self._call('post', 'wipe_user/', f'wipe of user {user_name!r}', json={'Uid': user_name}) is None:
                return self.error_message
            if user_name == self.user_name:
                for oaio_id in list(self._engine.records):
                    self._drop_local(oaio_id, wipe_files=True)
                self._api.logged_in = False
            return ''

    # helpers --------------------------------------------------------------------------------

    def _call(self, method: str, slug: str, what: str, **kwargs):
        try:
            return self._api.json(method, slug, what, **kwargs)
        except OaioError as exc:
            self.error_message = str(exc)
            return None

    def _record(self, oaio_id: str) -> ObjectRecord:
        record = self._engine.records.get(oaio_id)
        if record is None:
            raise p.ProtocolError(f'oaio object {oaio_id!r} is not registered')
        return record

    def _check_writable(self, record: ObjectRecord) -> None:
        if record.obj.csh_access_right not in p.WRITE_RIGHTS:
            raise AccessDenied(f'your right {record.obj.csh_access_right!r} does not allow to change '
                               f'{record.obj.oaio_id!r}', 403)

    def _drop_local(self, oaio_id: str, wipe_files: bool) -> None:
        self._engine.records.pop(oaio_id, None)
        self._store.delete_record(oaio_id, wipe_files=wipe_files)

    @staticmethod
    def _provide_file(path: Path, content: Optional[bytes]) -> None:
        if content is not None and not isinstance(content, (bytes, bytearray)):
            raise p.ProtocolError(f'file_content must be bytes, got {type(content).__name__}')
        if content is None:
            if not path.is_file():
                raise p.ProtocolError(f'file to attach not found: {path}')
            return
        make_private_dirs(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)     # private like the whole cache
        with os.fdopen(fd, 'wb') as file:
            file.write(content)


def _main_file(paths: list[str]) -> str:
    """The file of a file object: its first path that is not a conflict copy."""
    return next((path for path in paths if p.CONFLICT_MARK not in path.rsplit('/', 1)[-1]), paths[0])


def _move_hashes(hashes: dict, old: str, new: str) -> None:
    """Carry the cached hashes of a moved file, or of the files under a moved folder, to their new
    paths (still checked against size and mtime before use)."""
    if old in hashes:               # a file: no need to look through the others
        hashes[new] = hashes.pop(old)
        return
    inside = old + '/'
    for path in [path for path in hashes if path.startswith(inside)]:
        hashes[new + path[len(old):]] = hashes.pop(path)
