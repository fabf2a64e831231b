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
from typing import Optional
from urllib.parse import quote

from . import protocol as p
from .api import ServerApi
from .errors import AccessDenied, OaioError, OfflineError
from .model import OaiObject, object_id
from .store import LAST_SYNC_STAMP_FILE, LocalStore, ObjectRecord, make_private_dirs
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
                 auto_sync: bool = True):
        """Open the local store in ``client_root`` (exclusively) and prepare the server session.

        :param host: ``host[:port]`` (http for localhost/127.0.0.1, else https) or a full URL.
        :param credentials: ``{'username': …, 'password': …}``.
        :param app_id: id of the app; defaults to the program's name.
        :param device_id: id of this device; defaults to the host name.
        :param csh_default_id: storage host of new objects' files; defaults to the oaio server itself.
        :param client_root: cache folder; ``{usr}``, ``{home}``, ``{cwd}`` and ``~`` are expanded.
        :param auto_sync: synchronize after every change, as the original does; the mount turns it off
            and runs its own sync task.
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
        self._error_message = ''
        self._lock = threading.RLock()
        self._store = LocalStore(self.client_root)
        self._api = ServerApi(host, self.user_name, credentials['password'], self.device_id, self.app_id)
        self._engine = SyncEngine(self._store, self._api, self.device_id)
        self._watch_api: ServerApi | None = None
        self.online = False         # did the last contact with the server succeed?

    # lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Log out, close the HTTP sessions and release ``client_root``."""
        with self._lock:
            for api in (self._api, self._watch_api):
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

    def default_files_root(self, oaio_id: str) -> Path:
        """Where the files of a new object without a root of its own will live (no lock taken)."""
        return Path(self.client_root) / 'filez' / p.check_oaio_id(oaio_id)

    def object(self, oaio_id: str) -> OaiObject | None:
        """A copy of one object of the local store, or None."""
        with self._lock:
            record = self._engine.records.get(oaio_id)
            return copy.deepcopy(record.obj) if record else None

    def refresh_files(self, oaio_id: str, file_paths: list[str]) -> bool:
        """Take the object's current files: set ``_file_paths`` and make a new local version if the
        list or any file's content changed (content compared by sha256). True if it did."""
        with self._lock:
            record = self._record(oaio_id)
            before = {path: cached[2] for path, cached in record.hashes.items() if cached}
            paths = sorted(p.check_file_paths(list(file_paths)))
            if paths == record.obj.file_paths:
                manifest = self._engine.local_manifest(record, strict=False)
                if all(before.get(path) == entry['sha256'] for path, entry in manifest.items()) \
                        and set(manifest) == set(paths):
                    return False
            self.update_object(oaio_id, {p.FILE_PATHS_KEY: paths})
            return True

    def owner_of(self, oaio_id: str) -> str:
        """The user who registered the object ('' if not known yet)."""
        with self._lock:
            return self._record(oaio_id).owner

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
        with self._lock:
            cursor = self._engine.state['cursor']
            if self._watch_api is None:
                self._watch_api = ServerApi(self._api.url, self.user_name, self._api._password,
                                            self.device_id, self.app_id)
        answer = self._watch_api.changes(cursor, wait=timeout)      # outside the lock: it waits
        if not answer.get('changes') and answer.get('cursor') == cursor:
            return []
        with self._lock:
            if self._engine.state['cursor'] != cursor:              # someone synced meanwhile
                return self._engine.pull()
            return self._engine.pull(first_answer=answer)

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
            folder = Path(self.client_root) / 'filez' / oaio_id
        self._provide_file(folder / file_name, file_content)
        if root_path:
            return self.register_object(values, stamp=stamp, csh_id=csh_id, local_root=str(folder))
        return self.register_object(values, stamp=stamp, oaio_id=oaio_id, csh_id=csh_id)

    def register_folder(self, root_path: str, stamp: str = '', csh_id: str = '') -> Optional[OaiObject]:
        """Register a new object holding every file under ``root_path``."""
        folder = Path(expand_path(root_path))
        if not folder.is_dir():
            raise p.ProtocolError(f'register_folder(): {root_path!r} is not a folder')
        values = {p.ROOT_PATH_KEY: root_path, p.FILE_PATHS_KEY: _folder_files(folder)}
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
            values = {p.FILE_PATHS_KEY: _folder_files(self._store.files_root(record))}
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
        p.check_oaio_id(oaio_id)
        if not isinstance(user_name, str) or not user_name:
            raise p.ProtocolError('user_name must be a non-empty string')
        with self._lock:
            self.error_message = ''
            answer = self._call('post', 'subscribe/', f'subscription of {user_name!r} to {oaio_id!r}',
                                json={'oaio_id': oaio_id, 'username': user_name, 'access_right': right})
            if answer is None:
                return None
            if right == p.NO_RIGHT and user_name == self.user_name and oaio_id in self._engine.records:
                self._drop_local(oaio_id, wipe_files=not self._engine.records[oaio_id].local_root)
            return answer.get('Pid', 0)

    def userz_access(self, oaio_id: str) -> list[dict[str, str]]:
        """Users and their rights for ``oaio_id`` (sorted: C, D, U, r, then name); for an unknown id
        every user with 'x'; [] on error."""
        if oaio_id:
            p.check_oaio_id(oaio_id)
        slug = 'user_subz/' + quote(oaio_id or '_not__existing__oaio_id_', safe='')
        with self._lock:
            answer = self._call('get', slug, f'access list of {oaio_id!r}')
        if not isinstance(answer, list):
            return []
        order = {right: index for index, right in enumerate(p.ACCESS_RIGHTS + (p.NO_RIGHT,))}
        return sorted(answer, key=lambda row: (order.get(row.get('access_right'), 9), row.get('username', '')))

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
    return next((path for path in paths if '.conflict-' not in path.rsplit('/', 1)[-1]), paths[0])


def _folder_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob('*') if path.is_file())
