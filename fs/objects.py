"""The object layer of the mount: what each node is, what may be done to it, and the local
changes (the *overlay*) not yet handed to the client.

Handlers must answer at once, while the client may be busy syncing for a long time, so local
changes of objects — new objects, values, renames, removals, changed files — are noted here with
an increasing sequence number; the runner's flusher hands them to the client in batches and drops
them once a fresh view from the client contains them.
"""
from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import stat as stat_module
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio

from oaio.client import OaioClient, OaioError, object_id
from oaio.client.model import MANAGED_KEYS, user_values
from oaio.client import protocol as p
from oaio.client.store import write_atomic

from .errors import refuse
from .inodes import ROOT, Node
from .names import VALUES_FILE, is_temp_path, unique_names
from .view import ObjectInfo, View

log = logging.getLogger(__name__)

MAX_VALUES_BYTES = p.MAX_VALUES_BYTES
SERVER_SECONDS = 30.0           # the longest a handler waits for the server (sharing's xattrs)
OVERLAY_FILE = 'fs-overlay.json'        # in the cache: object changes not yet handed to the client


@dataclass
class MountStatus:
    """The connection as ``oaio status`` shows it; written by the sync task alone."""

    online: bool = False        # did the last contact with the server succeed?
    last_error: str = ''        # why the last sync did not complete ('' if it did)

    def contact(self, online: bool, error: str | None = None) -> None:
        """The outcome of a contact: ``error`` (with a sync: '' when it completed) is kept if given."""
        self.online = online
        if error is not None:
            self.last_error = error


@dataclass
class Overlay:
    """Local object changes not yet in the client, each with the sequence number of its change."""

    new: dict[str, int] = field(default_factory=dict)           # oaio_id → seq: registered by mkdir
    values: dict[str, tuple[int, dict]] = field(default_factory=dict)
    files: dict[str, dict[str, int]] = field(default_factory=dict)      # oaio_id → {path → seq}: paths of
    #                                                                     files or folders written, made or removed
    renamed: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)    # oaio_id → [(seq, old, new)]
    #                                                                     in order: moves within an object
    removed: dict[str, int] = field(default_factory=dict)       # oaio_id → seq: rmdir

    def copy(self) -> Overlay:
        return Overlay(dict(self.new), dict(self.values), {k: dict(v) for k, v in self.files.items()},
                       {k: list(v) for k, v in self.renamed.items()}, dict(self.removed))

    def drop_up_to(self, seq: int) -> None:
        """Forget the changes the client has taken (those numbered up to ``seq``)."""
        self.new = {k: s for k, s in self.new.items() if s > seq}
        self.values = {k: v for k, v in self.values.items() if v[0] > seq}
        self.files = {k: kept for k, paths in self.files.items()
                      if (kept := {path: s for path, s in paths.items() if s > seq})}
        self.renamed = {k: kept for k, moves in self.renamed.items() if (kept := [m for m in moves if m[0] > seq])}
        self.removed = {k: s for k, s in self.removed.items() if s > seq}

    def __bool__(self) -> bool:
        return bool(self.new or self.values or self.files or self.removed)

    def save(self, cache_root: str) -> None:
        """Keep the object changes on disk until the client has them, so that a killed mount loses
        no closed values.json, mkdir, rmdir or rename (changed files are in the cache already)."""
        path = Path(cache_root) / OVERLAY_FILE
        if self.new or self.values or self.removed:
            write_atomic(path, json.dumps({'new': self.new, 'values': self.values, 'removed': self.removed}).encode())
        else:
            path.unlink(missing_ok=True)

    @classmethod
    def saved(cls, cache_root: str) -> Overlay:
        """The changes a mount noted but did not hand to the client before it ended (empty if none)."""
        try:
            data = json.loads((Path(cache_root) / OVERLAY_FILE).read_text())
            return cls(dict(data['new']), {oaio_id: (seq, values) for oaio_id, (seq, values) in data['values'].items()},
                       removed=dict(data['removed']))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error('%s unreadable, the object changes it kept are lost: %s', OVERLAY_FILE, exc)
            return cls()


class ObjectLayer:
    """Nodes → local files and object changes. Never blocks on the client."""

    def __init__(self, client: OaioClient, view: View, status: MountStatus | None = None):
        self.client = client
        self.cache_root = client.client_root
        self.overlay = Overlay()
        self.seq = 0
        self.status = status or MountStatus()
        self.last_change = 0.0              # time.monotonic() of the latest change (the flusher's debounce)
        self._taken = 0                     # the number of the latest change a batch took
        self._changed = trio.Event()        # set at every change
        self.started_ns = time.time_ns()
        self._base = view
        self._objects: dict[str, ObjectInfo] = {}
        self._by_name: dict[str, str] = {}
        self._compose()

    # the view ------------------------------------------------------------------------------

    def set_view(self, view: View, taken_up_to: int = 0) -> None:
        """A fresh view from the client, which holds every change numbered up to ``taken_up_to``."""
        self._base = view
        self.overlay.drop_up_to(taken_up_to)
        self.overlay.save(self.cache_root)
        self._compose()

    def show_objects(self, infos: dict[str, ObjectInfo | None]) -> None:
        """Objects as a sync is applying them (None: gone), before the fresh view at its end."""
        objects = dict(self._base.objects)
        for oaio_id, info in infos.items():
            if info is None:
                objects.pop(oaio_id, None)
            else:
                objects[oaio_id] = info
        self._base = View(objects)
        self._compose()

    def _compose(self) -> None:
        """Objects as the client has them, with the overlay on top."""
        objects = {oid: info for oid, info in self._base.objects.items() if oid not in self.overlay.removed}
        for oaio_id in self.overlay.new:
            if oaio_id not in objects and oaio_id not in self.overlay.removed:
                objects[oaio_id] = ObjectInfo(oaio_id, '', {}, '', p.CREATE_RIGHT, self.client.user_name,
                                              'pending', self.client.default_files_root(oaio_id))
        for oaio_id, (_, values) in self.overlay.values.items():
            if oaio_id in objects:
                objects[oaio_id] = replace(objects[oaio_id], values=values, sync='pending', values_pending=True)
        names = unique_names({oid: info.values for oid, info in objects.items()})
        self._objects = {oid: replace(info, name=names[oid]) for oid, info in objects.items()}
        self._by_name = {info.name: oid for oid, info in self._objects.items()}

    def _note(self, kind: str, oaio_id: str, values: dict | None = None) -> None:
        self._count_change()
        if kind == 'values':
            self.overlay.values[oaio_id] = (self.seq, values)
        else:
            getattr(self.overlay, kind)[oaio_id] = self.seq
        self.overlay.save(self.cache_root)
        self._compose()

    def _note_path(self, oaio_id: str, path: str) -> None:
        """A file or folder of an object was written, made or removed (files are in the cache
        already: a killed mount's are found by the rescan at the next start, so none is saved)."""
        self._count_change()
        self.overlay.files.setdefault(oaio_id, {})[path] = self.seq

    def _count_change(self) -> None:
        self.seq += 1
        self.last_change = time.monotonic()
        self._changed.set()                 # already set during a burst: wakes nobody

    def has_untaken_changes(self) -> bool:
        """Whether a change was noted since the last batch was taken."""
        return self.seq > self._taken

    async def wait_untaken_changes(self) -> None:
        """Until a change is noted that no batch has taken yet (for one waiter: the flusher)."""
        while not self.has_untaken_changes():
            if self._changed.is_set():
                self._changed = trio.Event()
            await self._changed.wait()

    def take_batch(self) -> tuple[Overlay, int]:
        """The local changes noted so far, to hand to the client, and the number of the latest: a
        view holding them all is set with it (:meth:`set_view`), which then forgets them."""
        self._taken = self.seq
        return self.overlay.copy(), self.seq

    def has_pending(self) -> bool:
        """Whether an object has local versions the client has not uploaded yet."""
        return any(info.sync == 'pending' for info in self._objects.values())

    def info(self, oaio_id: str) -> ObjectInfo:
        info = self._objects.get(oaio_id)
        if info is None:
            refuse(errno.ENOENT)
        return info

    def object_id_by_name(self, name: str) -> str:
        oaio_id = self._by_name.get(name)
        if oaio_id is None:
            refuse(errno.ENOENT)
        return oaio_id

    def oaio_ids(self) -> list[str]:
        return list(self._objects)

    def object_names(self) -> list[str]:
        """The names of the object directories shown at the drive's root."""
        return list(self._by_name)

    def names_of(self, oaio_ids) -> set[str]:
        """The names these objects are shown under (at the drive's root)."""
        return {info.name for oaio_id in oaio_ids if (info := self._objects.get(oaio_id)) is not None}

    def view_stamps(self) -> dict[str, str]:
        """The stamp of every object of the client's view (the overlay not counted)."""
        return {oaio_id: info.stamp for oaio_id, info in self._base.objects.items()}

    # nodes ---------------------------------------------------------------------------------

    def real_path(self, node: Node) -> str:
        """The file or folder in the cache that ``node`` shows (a str: lookups and listings build one
        per entry, and joining ``Path``s costs more than the ``lstat`` itself)."""
        root = str(self.info(node.oaio_id).files_root)
        return f'{root}/{node.path}' if node.path else root

    def parent(self, node: Node) -> Node:
        if node.kind in ('root', 'object'):
            return ROOT
        if node.kind == 'values' or '/' not in node.path:
            return Node('object', node.oaio_id)
        return Node('path', node.oaio_id, node.path.rsplit('/', 1)[0])

    def attributes(self, node: Node) -> dict:
        if node.kind == 'root':
            return {'mode': stat_module.S_IFDIR | 0o755, 'size': 0, 'nlink': 2, 'mtime_ns': self.started_ns}
        info = self.info(node.oaio_id)
        write_bits = 0o222 if info.writable else 0
        if node.kind == 'object':
            return {'mode': stat_module.S_IFDIR | 0o555 | (write_bits & 0o200), 'size': 0, 'nlink': 2,
                    'mtime_ns': _stamp_ns(info.stamp) or self.started_ns}
        if node.kind == 'values':
            return {'mode': stat_module.S_IFREG | 0o444 | (write_bits & 0o200), 'size': len(info.values_json()),
                    'mtime_ns': _stamp_ns(info.stamp) or self.started_ns}
        st = os.lstat(self.real_path(node))
        # read-only: 0444 files, 0555 folders (the cache's own 0600 of downloads is no right to show)
        mode = st.st_mode if info.writable else \
            (st.st_mode & ~0o777) | (0o555 if st.st_mode & stat_module.S_IXUSR else 0o444)
        return {'mode': mode, 'size': st.st_size, 'nlink': 1, 'atime_ns': st.st_atime_ns, 'mtime_ns': st.st_mtime_ns,
                'ctime_ns': st.st_ctime_ns}

    def list_directory(self, node: Node) -> list[tuple[str, Node]]:
        if node.kind == 'root':
            return sorted((info.name, Node('object', oid)) for oid, info in self._objects.items())
        if node.kind not in ('object', 'path'):
            refuse(errno.ENOTDIR)
        entries = [(VALUES_FILE, Node('values', node.oaio_id))] if node.kind == 'object' else []
        prefix = node.path + '/' if node.path else ''
        with os.scandir(self.real_path(node)) as scan:
            names = sorted(entry.name for entry in scan)
        return entries + [(name, Node('path', node.oaio_id, prefix + name)) for name in names]

    def writable(self, node: Node) -> bool:
        """Whether this device may change ``node`` (anything but the drive's root is in an object)."""
        return node.kind == 'root' or self.info(node.oaio_id).writable

    def check_writable(self, node: Node) -> None:
        if not self.writable(node):
            refuse(errno.EACCES, f'{self.info(node.oaio_id).name}: shared with you read-only')

    def xattr(self, node: Node, key: str) -> str:
        info = self.info(node.oaio_id)
        if key == 'sync':
            return self.sync_state(node, info)
        return {'id': info.oaio_id, 'stamp': info.stamp, 'right': info.right, 'owner': info.owner}[key]

    def unsynced_paths(self, info: ObjectInfo) -> set[str]:
        """The paths of an object whose content here is not on the server yet: as the client counts
        them, and those written since it took the last batch."""
        return set(info.unsynced).union(self.overlay.files.get(info.oaio_id, ()))

    def object_state(self, info: ObjectInfo) -> str:
        """The object's state, pending too while files written here are not in a view from the client
        (noted without composing the view again: a write costs no walk of the objects)."""
        return 'pending' if info.sync != 'error' and info.oaio_id in self.overlay.files else info.sync

    def sync_state(self, node: Node, info: ObjectInfo) -> str:
        """``user.oaio.sync``: an object's folder tells the whole object's state; ``values.json``, a
        file or a folder within it only its own — pending while its content here is not on the server
        (error if the object's uploads are on hold), conflict if it is a conflict copy or has one."""
        if node.kind == 'object':
            return self.object_state(info)
        if node.kind == 'values':
            pending, name = info.values_pending, VALUES_FILE
        else:
            inside = node.path + '/'
            pending = any(path == node.path or path.startswith(inside) for path in self.unsynced_paths(info))
            name = node.path
        if pending:
            return 'error' if info.sync == 'error' else 'pending'
        return 'conflict' if name in conflicted_paths(info.values.get(p.FILE_PATHS_KEY) or []) else 'synced'

    def mount_xattr(self, key: str) -> str:
        """The mount root's attributes: ``pid`` of this process, ``status`` as JSON."""
        if key == 'pid':
            return str(os.getpid())
        states = [self.object_state(info) for info in self._objects.values()]
        # a change counts once per file or folder not on the server yet; values, names, new and
        # removed objects once per object
        pending = sum(max(1, len(self.unsynced_paths(info))) for info in self._objects.values()
                      if self.object_state(info) == 'pending') + len(self.overlay.removed)
        return json.dumps({'online': self.status.online, 'objects': len(states), 'pending': pending,
                           'pending_objects': states.count('pending') + len(self.overlay.removed),
                           'conflicts': states.count('conflict'), 'errors': states.count('error'),
                           'last_sync': self.client.last_sync_stamp, 'last_error': self.status.last_error,
                           'user': self.client.user_name,
                           'server': self.client.server_url, 'cache': self.cache_root})

    async def access_list(self, oaio_id: str) -> str:
        """The subscribers of an object with their rights, as JSON (asks the server)."""
        name = self.info(oaio_id).name
        try:
            return json.dumps(await ask_server(self.client.access_list, oaio_id))
        except (OaioError, trio.TooSlowError) as exc:
            log.warning('access list of %s: %s', name, str(exc) or 'no answer in time')
            raise

    async def share(self, oaio_id: str, user: str, right: str) -> None:
        """Give ``user`` the ``right`` (x removes it) to an object (asks the server)."""
        name = self.info(oaio_id).name
        if not user or right not in p.ACCESS_RIGHTS + (p.NO_RIGHT,):
            refuse(errno.EINVAL)
        try:
            await ask_server(self.client.share, oaio_id, user, right)
        except (OaioError, trio.TooSlowError) as exc:
            log.warning('sharing %s with %s failed: %s', name, user, str(exc) or 'no answer in time')
            raise

    # files ---------------------------------------------------------------------------------

    def open_file(self, node: Node, flags: int) -> int:
        fd = os.open(self.real_path(node), flags)
        if flags & os.O_TRUNC:
            self.mark_dirty(node)
        return fd

    def create_file(self, node: Node, flags: int, mode: int) -> int:
        if node.kind == 'object':
            refuse(errno.EPERM, 'only directories can be made at the top of the mount: mkdir makes a new object')
        self.check_writable(node)
        fd = os.open(self.real_path(node), flags | os.O_CREAT, mode & 0o777)
        self.mark_dirty(node)
        return fd

    def truncate(self, node: Node, size: int) -> None:
        self.check_writable(node)
        if node.kind == 'path':
            os.truncate(self.real_path(node), size)
            self.mark_dirty(node)

    def chmod(self, node: Node, mode: int) -> None:
        self.check_writable(node)
        if node.kind == 'path':
            os.chmod(self.real_path(node), mode)

    def utime(self, node: Node, atime_ns: int | None, mtime_ns: int | None) -> None:
        self.check_writable(node)
        if node.kind == 'path':
            st = os.lstat(self.real_path(node))
            os.utime(self.real_path(node), ns=(atime_ns or st.st_atime_ns, mtime_ns or st.st_mtime_ns))

    def unlink(self, node: Node) -> None:
        self.check_writable(node)
        if node.kind == 'values':
            return          # values.json always exists; removing it (rm -r) leaves the values as they are
        if node.kind != 'path':
            refuse(errno.EISDIR)
        os.unlink(self.real_path(node))
        self.mark_dirty(node)

    def mark_dirty(self, node: Node) -> None:
        """A file or folder of the object changed (or came or went); temp files never make a new version."""
        if node.kind == 'path' and not is_temp_path(node.path):
            self._note_path(node.oaio_id, node.path)

    def mark_moved(self, old: Node, new: Node) -> None:
        """A file or folder moved: the client carries its hashes over when it stays in its object."""
        self.mark_dirty(old)
        self.mark_dirty(new)
        if old.oaio_id == new.oaio_id and not is_temp_path(old.path) and not is_temp_path(new.path):
            self.overlay.renamed.setdefault(old.oaio_id, []).append((self.seq, old.path, new.path))

    # values.json ---------------------------------------------------------------------------

    def values_text(self, oaio_id: str) -> bytes:
        return self.info(oaio_id).values_json()

    def check_values_size(self, size: int) -> None:
        if size > MAX_VALUES_BYTES:
            refuse(errno.EFBIG, f'values.json larger than {MAX_VALUES_BYTES} bytes refused')

    async def write_values(self, oaio_id: str, text: bytes) -> None:
        """Apply a written values.json; EINVAL (previous values kept) if it is not a JSON object."""
        info = self.info(oaio_id)
        try:
            values = json.loads(text.decode('utf-8'))
            if not isinstance(values, dict):
                raise ValueError(f'values.json must hold a JSON object, not {type(values).__name__}')
            p.check_values(user_values(values))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            log.warning('%s/values.json: not saved, the previous values stay: %s', info.name, exc)
            refuse(errno.EINVAL)
        kept = {key: info.values[key] for key in MANAGED_KEYS if key in info.values}      # the view's, for its names
        values = user_values(values) | kept
        if values != info.values:
            self._note('values', oaio_id, values)

    # directories ---------------------------------------------------------------------------

    async def mkdir(self, parent: Node, name: str, mode: int) -> Node:
        if parent.kind == 'root':
            if name in self._by_name:
                refuse(errno.EEXIST)
            p.check_name(name, 'object name')
            values = {p.NAME_KEY: name}
            oaio_id = object_id(self.client.user_name, self.client.device_id, self.client.app_id,
                                p.now_stamp(), values)
            self.client.default_files_root(oaio_id).mkdir(parents=True, exist_ok=True)
            self._note('new', oaio_id)
            self._note('values', oaio_id, values)
            return Node('object', oaio_id)
        self.check_writable(parent)
        node = Node('path', parent.oaio_id, f'{parent.path}/{name}' if parent.path else name)
        os.mkdir(self.real_path(node), mode & 0o777)
        return node

    async def rmdir(self, node: Node) -> None:
        if node.kind == 'object':
            if any(Path(self.real_path(node)).iterdir()):
                refuse(errno.ENOTEMPTY)
            self._note('removed', node.oaio_id)
            return
        self.check_writable(node)
        if node.kind != 'path':
            refuse(errno.ENOTDIR)
        os.rmdir(self.real_path(node))
        self.mark_dirty(node)

    async def rename(self, old: Node, new_parent: Node, new_name: str) -> Node | None:
        """Rename; returns the node's new identity when a file or folder moved (for the inode table)."""
        if old.kind == 'object':
            return self._rename_object(old, new_parent, new_name)
        if old.kind == 'root':
            refuse(errno.EINVAL)
        self.check_writable(old)
        if new_parent.kind == 'root':
            refuse(errno.EPERM, 'only directories can be at the top of the mount')
        self.check_writable(new_parent)
        new = Node('path', new_parent.oaio_id, f'{new_parent.path}/{new_name}' if new_parent.path else new_name)
        if new_parent.kind == 'object' and new_name == VALUES_FILE:
            return await self._rename_onto_values(old, new_parent.oaio_id)
        if old.kind == 'values':          # e.g. vim's backup: the values stay, the copy is a local file
            data = self.values_text(old.oaio_id)
            with open(self.real_path(new), 'wb') as copy:
                copy.write(data)
            self.mark_dirty(new)
            return new
        os.rename(self.real_path(old), self.real_path(new))
        self.mark_moved(old, new)
        return new

    async def _rename_onto_values(self, old: Node, oaio_id: str) -> Node:
        """sed -i, editors' save-by-rename: the renamed file's content becomes the values."""
        path = Path(self.real_path(old))
        if path.stat().st_size > MAX_VALUES_BYTES:
            refuse(errno.EFBIG)
        await self.write_values(oaio_id, path.read_bytes())
        path.unlink()
        self.mark_dirty(old)
        return Node('values', oaio_id)

    def _rename_object(self, old: Node, new_parent: Node, new_name: str) -> None:
        if new_parent.kind != 'root':
            refuse(errno.EPERM, 'an object directory cannot move into another directory')
        info = self.info(old.oaio_id)
        if new_name == info.name:
            return None
        if new_name in self._by_name:
            refuse(errno.EEXIST)
        self.check_writable(old)
        p.check_name(new_name, 'object name')
        self._note('values', old.oaio_id, {**info.values, p.NAME_KEY: new_name})
        return None


def conflicted_paths(paths: list[str]) -> set[str]:
    """The conflict copies among an object's paths and the files they are copies of
    (``dir/name.conflict-DEVICE-STAMP.ext`` is a copy of ``dir/name.ext``; ``values.json``'s are
    ``values.conflict-DEVICE-STAMP.json``)."""
    found = set()
    for path in paths:
        match = _CONFLICT_COPY.fullmatch(path)
        if match:
            found.update((path, match['stem'] + match['ext']))
    return found


_CONFLICT_COPY = re.compile(rf'(?P<stem>(?:.*/)?[^/]*?){re.escape(p.CONFLICT_MARK)}[^/]*-\d{{20}}(?P<ext>[^/]*)')


async def ask_server(function, *args):
    """One request of a handler to the server, in a worker thread and for at most
    :data:`SERVER_SECONDS`: the client methods it calls take no lock a sync holds, so a handler
    waits for its own request only, never for a sync (trio.TooSlowError after the time)."""
    with trio.fail_after(SERVER_SECONDS):
        return await trio.to_thread.run_sync(function, *args, abandon_on_cancel=True)


@functools.lru_cache(maxsize=4096)         # lookups and readdir ask for it per entry; strptime is slow
def _stamp_ns(stamp: str) -> int:
    try:
        return int(p.stamp_datetime(stamp).timestamp() * 1e9)
    except (p.ProtocolError, ValueError):
        return 0
