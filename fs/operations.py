"""The pyfuse3 ``Operations``: translate each request into one call on the store's files or the
object layer, and build the reply. Decisions live in :mod:`oaio.fs.objects`; errno mapping in
:mod:`oaio.fs.errors`.

Attached files are the client store's cache files themselves (``files_root`` of each object),
so reads and writes go straight to the local disk; every change marks its object dirty and the
runner turns a burst of changes into one new version.
"""
from __future__ import annotations

import errno
import importlib.metadata
import logging
import os
import stat as stat_module
from collections.abc import Sequence

import pyfuse3
from pyfuse3 import EntryAttributes, FileHandleT, FileNameT, FlagT, InodeT, ModeT, RequestContext, XAttrNameT

from oaio.client import protocol as p

from .errors import handler, refuse
from .inodes import ROOT, ROOT_INODE, InodeTable, Node
from .names import VALUES_FILE
from .objects import ObjectLayer

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0             # entry and attribute timeouts; remote changes invalidate explicitly
XATTRS = ('user.oaio.id', 'user.oaio.stamp', 'user.oaio.right', 'user.oaio.owner', 'user.oaio.sync')
ROOT_XATTRS = ('user.oaio.status', 'user.oaio.pid')
ACCESS_XATTR = 'user.oaio.access'         # an object's subscribers (JSON), asked from the server
SHARE_XATTR = 'user.oaio.share'           # set to "USER:RIGHT" on an object directory to share it
# pyfuse3 as contrib/pyfuse3/build installs it passes two more flags of libfuse's fuse_file_info on:
# ``noflush`` (close() of an attached file is no round trip: its FLUSH would do nothing) and
# ``cache_readdir`` (the kernel answers a folder listed before, until it changes). The plain pyfuse3
# works too, without these savings.
EXTENDED_PYFUSE3 = hasattr(pyfuse3.FileInfo(), 'cache_readdir')


def pyfuse3_description() -> str:
    """Which pyfuse3 the mount runs with, for its log."""
    flags = 'with noflush and cache_readdir' if EXTENDED_PYFUSE3 else 'plain: without noflush and cache_readdir'
    return f'pyfuse3 {importlib.metadata.version("pyfuse3")} ({flags})'


def check_new_name(raw: bytes) -> str:
    """The name a new file, folder or object gets (create, mkdir, rename), checked at once rather
    than failing at sync: ENAMETOOLONG over 255 bytes, EINVAL if it is not valid UTF-8 or holds what
    the protocol refuses (control characters, backslash)."""
    if len(raw) > p.MAX_NAME_BYTES:
        refuse(errno.ENAMETOOLONG)
    try:
        name = raw.decode('utf-8')
    except UnicodeDecodeError:
        refuse(errno.EINVAL, f'{raw!r:.80}: not a valid UTF-8 name')
    p.check_name(name)          # ProtocolError: EINVAL
    return name


def _skip_flush(info: pyfuse3.FileInfo, handle: 'Handle') -> None:
    """No FLUSH at close() of a file on the cache (its flush() does nothing), with the extended
    pyfuse3; values.json keeps it: invalid JSON fails close() there."""
    if EXTENDED_PYFUSE3 and handle.fd >= 0:
        info.noflush = True


class Handle:
    """An open file: a file descriptor on the cache, or the text of a values.json being edited.
    ``inode`` is what it was opened on: the node it stands for now (after a rename, a move to
    another object) is asked of the inode table, ``node`` is only where it was opened."""

    def __init__(self, node: Node, fd: int = -1, text: bytearray | None = None, inode: int = 0):
        self.node, self.fd, self.text, self.inode = node, fd, text, inode
        self.modified = False
        self.refused = False            # the last values.json text written was invalid


class Operations(pyfuse3.Operations):
    """The oaio mount's request handlers."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, layer: ObjectLayer):
        super().__init__()
        log.info('%s', pyfuse3_description())
        self.layer = layer
        self.inodes = InodeTable()
        self._handles: dict[int, Handle] = {}
        self._listings: dict[int, list[tuple[bytes, Node]]] = {}
        self.cached_folders: set[int] = set()           # inodes whose listing the kernel may keep
        self._next_handle = 1
        # inode → descriptor (O_PATH) of a file whose name went away (unlink, rename over it) while
        # the kernel still knew the inode: open files and racing opens keep working (see _hold)
        self._detached: dict[int, int] = {}
        self._owner = (os.getuid(), os.getgid())        # of every file shown (asked once, not per entry)

    # helpers ------------------------------------------------------------------------------

    def _node(self, inode: int) -> Node:
        node = self.inodes.node(inode)
        if node is None or (node.kind == 'gone' and inode not in self._detached):
            refuse(errno.ENOENT)
        return node

    def _detached_path(self, inode: int) -> str:
        return f'/proc/self/fd/{self._detached[inode]}'

    def _hold(self, node: Node, unlinking: bool = False) -> int:
        """Before ``node``'s name goes away: a descriptor on its file if the kernel knows the inode, so
        that open files (fstat, ftruncate, a re-open through /proc) and an open racing with a rename
        over the file (looked up before it, opened after it) keep working: save-by-rename is atomic
        for readers. An unlinked file nobody has open is let go at once instead, so its space is free
        when unlink returns, as on a local disk (the RELEASE of a file just closed reaches us before
        the UNLINK that follows the close); an open racing with the unlink gets ENOENT."""
        if node.kind != 'path' or self.inodes.lookups(node) == 0:
            return -1
        try:
            fd = os.open(self.layer.real_path(node), os.O_PATH | os.O_NOFOLLOW)
        except OSError:
            return -1
        if unlinking and not self._is_open(os.fstat(fd)):
            os.close(fd)
            return -1
        return fd

    def _is_open(self, st: os.stat_result) -> bool:
        """Whether a handle of ours is open on the file of ``st`` (matched by inode: a handle's node
        may name the file by a path it had before a rename)."""
        for handle in self._handles.values():
            if handle.fd >= 0:
                other = os.fstat(handle.fd)
                if (other.st_ino, other.st_dev) == (st.st_ino, st.st_dev):
                    return True
        return False

    def _detach(self, node: Node, fd: int) -> None:
        """``node``'s name is gone: its inode lives on unnamed (on ``fd``), the name gets a fresh inode."""
        inode = self.inodes.detach(node)
        if inode is not None and fd >= 0:
            self._detached[inode] = fd
        elif fd >= 0:
            os.close(fd)

    def _child(self, parent: Node, name: str) -> Node:
        if parent.kind == 'root':
            return Node('object', self.layer.object_id_by_name(name))
        if parent.kind == 'object' and name == VALUES_FILE:
            return Node('values', parent.oaio_id)
        if parent.kind not in ('object', 'path'):
            refuse(errno.ENOTDIR)
        return Node('path', parent.oaio_id, f'{parent.path}/{name}' if parent.path else name)

    def _entry(self, node: Node, count_lookup: bool = True) -> EntryAttributes:
        if node.kind == 'gone':
            inode = self.inodes.inode(node)
            st = os.fstat(self._detached[inode])
            attrs = {'mode': st.st_mode, 'size': st.st_size, 'nlink': 0, 'atime_ns': st.st_atime_ns,
                     'mtime_ns': st.st_mtime_ns, 'ctime_ns': st.st_ctime_ns}
        else:
            attrs = self.layer.attributes(node)         # first: a name that does not exist gets no inode
            inode = self.inodes.inode(node)
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = inode
        entry.generation = 0
        entry.entry_timeout = CACHE_SECONDS
        entry.attr_timeout = CACHE_SECONDS
        entry.st_mode = attrs['mode']
        entry.st_nlink = attrs.get('nlink', 1)
        entry.st_uid, entry.st_gid = self._owner
        entry.st_size = attrs['size']
        entry.st_blksize = 4096
        entry.st_blocks = (attrs['size'] + 511) // 512
        entry.st_mtime_ns = attrs['mtime_ns']
        entry.st_atime_ns = attrs.get('atime_ns', attrs['mtime_ns'])
        entry.st_ctime_ns = attrs.get('ctime_ns', attrs['mtime_ns'])
        if count_lookup:
            self.inodes.looked_up(inode)
        return entry

    def _new_handle(self, handle: Handle) -> int:
        number = self._next_handle
        self._next_handle += 1
        self._handles[number] = handle
        return number

    # lookups and attributes ----------------------------------------------------------------

    @handler
    async def lookup(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext | None = None) -> EntryAttributes:
        parent = self._node(parent_inode)
        name = os.fsdecode(name)
        if name == '.':
            return self._entry(parent)
        if name == '..':
            return self._entry(self.layer.parent(parent))
        return self._entry(self._child(parent, name))

    @handler
    async def getattr(self, inode: InodeT, ctx: RequestContext | None = None) -> EntryAttributes:
        return self._entry(self._node(inode), count_lookup=False)

    @handler
    async def access(self, inode: InodeT, mode: ModeT, ctx: RequestContext) -> bool:
        """access(2) and faccessat (``test -w``, vim's [readonly], rsync): the mode bits shown, as the
        kernel's own check would judge them, and no write access to what the layer would refuse (a
        read-only share), for root too."""
        node = self._node(inode)
        if mode & os.W_OK and node.kind in ('object', 'values', 'path') and not self.layer.writable(node):
            return False
        st_mode = self._entry(node, count_lookup=False).st_mode
        if ctx.uid == 0:                    # root may read and write anything, execute what anyone may
            return not mode & os.X_OK or stat_module.S_ISDIR(st_mode) or bool(st_mode & 0o111)
        uid, gid = self._owner
        if ctx.uid == uid:
            granted = st_mode >> 6
        elif ctx.gid == gid or gid in pyfuse3.get_sup_groups(ctx.pid):
            granted = st_mode >> 3
        else:
            granted = st_mode
        return mode & 0o7 & ~granted == 0

    @handler
    async def setattr(self, inode: InodeT, attr: EntryAttributes, fields: pyfuse3.SetattrFields,
                      fh: FileHandleT | None, ctx: RequestContext | None) -> EntryAttributes:
        node = self._node(inode)
        if ctx is not None and ctx.uid != 0 and (
                fields.update_uid and attr.st_uid != self._owner[0]
                or fields.update_gid and attr.st_gid != self._owner[1]
                and attr.st_gid not in pyfuse3.get_sup_groups(ctx.pid)):
            refuse(errno.EPERM)     # chown as the kernel would judge it; owners are not synchronized
        handle = self._handles.get(fh) if fh is not None else None
        if node.kind == 'gone':             # no name any more: change the file through its descriptor
            self._set_detached(self._detached_path(inode), attr, fields)
            return self._entry(node, count_lookup=False)
        if fields.update_size:
            if handle is not None and handle.text is not None:
                del handle.text[attr.st_size:]
                handle.modified = True
            else:
                self.layer.truncate(node, attr.st_size)
        if fields.update_mode:
            self.layer.chmod(node, stat_module.S_IMODE(attr.st_mode))
        if fields.update_atime or fields.update_mtime:
            self.layer.utime(node, attr.st_atime_ns if fields.update_atime else None,
                             attr.st_mtime_ns if fields.update_mtime else None)
        return self._entry(node, count_lookup=False)

    @staticmethod
    def _set_detached(path: str, attr: EntryAttributes, fields: pyfuse3.SetattrFields) -> None:
        if fields.update_size:
            os.truncate(path, attr.st_size)
        if fields.update_mode:
            os.chmod(path, stat_module.S_IMODE(attr.st_mode))
        if fields.update_atime or fields.update_mtime:
            st = os.stat(path)
            os.utime(path, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                               attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns))

    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        for inode, count in inode_list:
            self.inodes.forget(inode, count)
            if self.inodes.node(inode) is None:
                self.cached_folders.discard(inode)
            if inode in self._detached and self.inodes.node(inode) is None:
                os.close(self._detached.pop(inode))

    # for the runner's invalidations (never called from a handler) ----------------------------

    def kernel_entries(self, oaio_ids: list[str]) -> list[tuple[int, int, str | None]]:
        """(inode, parent inode, name or None) of every inode the kernel may cache of these objects."""
        entries = []
        for oaio_id in oaio_ids:
            for inode, node in self.inodes.known(oaio_id):
                parent = self.inodes.inode(self.layer.parent(node)) if node.kind != 'object' else ROOT_INODE
                name = VALUES_FILE if node.kind == 'values' else \
                    node.path.rsplit('/', 1)[-1] if node.kind == 'path' else None
                entries.append((inode, parent, name))
        return entries

    def cached_folders_of(self, oaio_ids: list[str]) -> list[int]:
        """The inodes of these objects' folders whose listings the kernel may keep (opendir)."""
        wanted = set(oaio_ids)
        return [inode for inode in self.cached_folders
                if (node := self.inodes.node(inode)) is not None and node.oaio_id in wanted]

    @handler
    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
        stats = os.statvfs(self.layer.cache_root)
        result = pyfuse3.StatvfsData()
        for name in ('f_bsize', 'f_frsize', 'f_blocks', 'f_bfree', 'f_bavail', 'f_files', 'f_ffree', 'f_favail'):
            setattr(result, name, getattr(stats, name))
        result.f_namemax = 255
        return result

    # directories ---------------------------------------------------------------------------

    @handler
    async def opendir(self, inode: InodeT, ctx: RequestContext) -> pyfuse3.FileInfo | FileHandleT:
        node = self._node(inode)
        listing = [(os.fsencode(name), child) for name, child in self.layer.list_directory(node)]
        number = self._new_handle(Handle(node))
        self._listings[number] = listing
        if EXTENDED_PYFUSE3 and node.kind != 'root':
            # the kernel keeps the listing of an object's folder (keep_cache: also from one open to
            # the next) and drops it when it changes: through the mount, when the folder's mtime (a
            # file folder's own, an object's stamp) differs, and when the runner invalidates it
            # after a sync. The drive's root stays uncached: its mtime does not follow the objects.
            self.cached_folders.add(inode)
            return pyfuse3.FileInfo(fh=number, keep_cache=True, cache_readdir=True)
        return number

    @handler
    async def readdir(self, fh: FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        listing = self._listings[fh]
        for index in range(start_id, len(listing)):
            name, child = listing[index]
            try:
                entry = self._entry(child, count_lookup=False)
            except FileNotFoundError:                   # gone since opendir (churn): not listed
                continue
            except pyfuse3.FUSEError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                continue
            if not pyfuse3.readdir_reply(token, name, entry, index + 1):
                return                                      # not sent: the kernel did not look it up
            self.inodes.looked_up(entry.st_ino)

    async def releasedir(self, fh: FileHandleT) -> None:
        self._listings.pop(fh, None)
        self._handles.pop(fh, None)

    @handler
    async def mkdir(self, parent_inode: InodeT, name: FileNameT, mode: ModeT, ctx: RequestContext) -> EntryAttributes:
        parent = self._node(parent_inode)
        return self._entry(await self.layer.mkdir(parent, check_new_name(name), mode))

    @handler
    async def rmdir(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext) -> None:
        parent = self._node(parent_inode)
        node = self._child(parent, os.fsdecode(name))
        await self.layer.rmdir(node)
        self._detach(node, -1)

    @handler
    async def rename(self, parent_inode_old: InodeT, name_old: FileNameT, parent_inode_new: InodeT,
                     name_new: FileNameT, flags: FlagT, ctx: RequestContext) -> None:
        if flags:
            refuse(errno.EINVAL)            # RENAME_EXCHANGE / RENAME_NOREPLACE are not supported
        old = self._child(self._node(parent_inode_old), os.fsdecode(name_old))
        new_parent = self._node(parent_inode_new)
        new_name = check_new_name(name_new)
        replaced = self._child(new_parent, new_name) if new_parent.kind in ('object', 'path') else None
        fd = self._hold(replaced) if replaced is not None else -1
        try:
            new = await self.layer.rename(old, new_parent, new_name)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        if new is not None:
            self._detach(new, fd)           # the inode the new name had before lives on unnamed
            self.inodes.rename(old, new)
        elif fd >= 0:
            os.close(fd)

    @handler
    async def unlink(self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext) -> None:
        node = self._child(self._node(parent_inode), os.fsdecode(name))
        fd = self._hold(node, unlinking=True)
        try:
            self.layer.unlink(node)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        if node.kind == 'path':
            self._detach(node, fd)

    @handler
    async def symlink(self, parent_inode: InodeT, name: FileNameT, target: FileNameT,
                      ctx: RequestContext) -> EntryAttributes:
        refuse(errno.EPERM, 'symbolic links cannot be synchronized')

    @handler
    async def link(self, inode: InodeT, new_parent_inode: InodeT, new_name: FileNameT,
                   ctx: RequestContext) -> EntryAttributes:
        refuse(errno.EPERM, 'hard links cannot be synchronized')

    # files ---------------------------------------------------------------------------------

    @handler
    async def open(self, inode: InodeT, flags: FlagT, ctx: RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND)
        if writing and node.kind != 'gone':
            self.layer.check_writable(node)
        info = pyfuse3.FileInfo()
        if node.kind == 'values':
            text = bytearray() if flags & os.O_TRUNC else bytearray(self.layer.values_text(node.oaio_id))
            handle = Handle(node, text=text)
            handle.modified = bool(flags & os.O_TRUNC)
            info.direct_io = True
        elif node.kind == 'path':
            handle = Handle(node, fd=self.layer.open_file(node, flags & ~os.O_CREAT), inode=inode)
            info.keep_cache = not writing
        elif node.kind == 'gone':           # unlinked or renamed over while the kernel still had it
            handle = Handle(node, fd=os.open(self._detached_path(inode), flags & ~os.O_CREAT))
        else:
            refuse(errno.EISDIR)
        _skip_flush(info, handle)
        info.fh = self._new_handle(handle)
        return info

    @handler
    async def create(self, parent_inode: InodeT, name: FileNameT, mode: ModeT, flags: FlagT,
                     ctx: RequestContext) -> tuple[pyfuse3.FileInfo, EntryAttributes]:
        parent = self._node(parent_inode)
        # a new name at the root is no object yet: the layer refuses the plain file (EPERM), not ENOENT
        node = Node('object') if parent.kind == 'root' else self._child(parent, check_new_name(name))
        info = pyfuse3.FileInfo()
        if node.kind == 'values':
            self.layer.check_writable(node)
            handle = Handle(node, text=bytearray())
            handle.modified = True
            info.direct_io = True
        else:
            handle = Handle(node, fd=self.layer.create_file(node, flags, mode))
        _skip_flush(info, handle)
        entry = self._entry(node)
        handle.inode = entry.st_ino
        info.fh = self._new_handle(handle)
        return info, entry

    @handler
    async def read(self, fh: FileHandleT, offset: int, size: int) -> bytes:
        handle = self._handles[fh]
        if handle.text is not None:
            return bytes(handle.text[offset:offset + size])
        return os.pread(handle.fd, size, offset)

    @handler
    async def write(self, fh: FileHandleT, offset: int, data: bytes) -> int:
        handle = self._handles[fh]
        handle.modified = True
        if handle.text is not None:
            self.layer.check_values_size(offset + len(data))
            if offset > len(handle.text):
                handle.text.extend(b'\0' * (offset - len(handle.text)))
            handle.text[offset:offset + len(data)] = data
            return len(data)
        written = os.pwrite(handle.fd, data, offset)
        # where the file is now: written after a rename (from a temp name, into another object), the
        # change belongs to the new name; written after an unlink, to no object ('gone')
        self.layer.mark_dirty(self.inodes.node(handle.inode) or handle.node)
        return written

    @handler
    async def flush(self, fh: FileHandleT) -> None:
        handle = self._handles[fh]
        if handle.text is not None and not handle.text:
            return      # '> values.json' truncates and closes a duplicate fd before anything is written
        await self._commit(handle)

    @handler
    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        handle = self._handles[fh]
        if handle.fd >= 0:
            os.fsync(handle.fd)
        await self._commit(handle)

    async def _commit(self, handle: Handle) -> None:
        """values.json: parse and apply what was written (EINVAL and nothing applied if invalid)."""
        if handle.text is None:
            return
        if handle.modified:
            handle.modified = False
            handle.refused = True           # until write_values accepts it
            await self.layer.write_values(handle.node.oaio_id, bytes(handle.text))
            handle.refused = False
        elif handle.refused:                # judged (and logged) already: fail close() too, quietly
            refuse(errno.EINVAL)

    @handler
    async def release(self, fh: FileHandleT) -> None:
        handle = self._handles.pop(fh)
        if handle.fd >= 0:
            os.close(handle.fd)
        elif handle.text is not None and handle.modified:
            await self._commit(handle)          # logs why if it is invalid; release cannot fail

    # extended attributes -------------------------------------------------------------------

    @handler
    async def getxattr(self, inode: InodeT, name: XAttrNameT, ctx: RequestContext) -> bytes:
        if not name.startswith(b'user.'):
            # ACLs (system.*), security labels (security.*), trusted.*: not supported, and saying so
            # (rather than "no such attribute") lets ls -l, cp -a and rsync -X stop asking per file.
            # The kernel still asks security.capability before every write(): answered first, cheaply
            refuse(errno.ENOTSUP)
        node = self._node(inode)
        name = os.fsdecode(name)
        if node.kind == 'root' and name in ROOT_XATTRS:
            return self.layer.mount_xattr(name.rsplit('.', 1)[-1]).encode()
        if node.kind == 'object' and name == ACCESS_XATTR:
            return (await self.layer.access_list(node.oaio_id)).encode()
        if node.kind == 'root' or name not in XATTRS:
            refuse(pyfuse3.ENOATTR)
        return self.layer.xattr(node, name.rsplit('.', 1)[-1]).encode()

    @handler
    async def listxattr(self, inode: InodeT, ctx: RequestContext) -> Sequence[XAttrNameT]:
        node = self._node(inode)
        names = ROOT_XATTRS if node.kind == 'root' else XATTRS
        return [name.encode() for name in names]

    @handler
    async def setxattr(self, inode: InodeT, name: XAttrNameT, value: bytes, ctx: RequestContext) -> None:
        node = self._node(inode)
        if node.kind != 'object' or os.fsdecode(name) != SHARE_XATTR:
            refuse(errno.ENOTSUP)
        user, _, right = value.decode('utf-8', 'replace').rpartition(':')
        await self.layer.share(node.oaio_id, user, right)

    @handler
    async def removexattr(self, inode: InodeT, name: XAttrNameT, ctx: RequestContext) -> None:
        refuse(errno.ENOTSUP)


__all__ = ['Operations', 'ROOT', 'ROOT_INODE']
