"""The request handlers without the kernel: a real ObjectLayer and Operations over a real OaioClient
(on the test server, files in a temporary cache) called directly inside ``trio.run``.

The only fake is the injected fault: one layer method monkeypatched to raise, which must become a
logged EIO, after which the same handlers work again ("the mount survives", at handler level).
A last test does the same on a real mount served by a thread of this test process.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import subprocess
import threading
import time
import types
import urllib.parse

import pyfuse3
import pytest
import trio

from oaio.client import OaioClient
from oaio.client import sync as sync_module
from oaio.fs import objects as objects_module
from oaio.fs import runner
from oaio.fs.inodes import ROOT_INODE
from oaio.fs.names import is_temp_path
from oaio.fs.objects import ObjectLayer
from oaio.fs.operations import EXTENDED_PYFUSE3, Operations
from oaio.fs.view import take_view

from oaio_testing import PASSWORD

RW = os.O_RDWR


class Drive:
    """Layer + Operations over a real client, and what the server holds, for one test."""

    def __init__(self, client: OaioClient, session):
        self.client, self.session = client, session
        self.layer = ObjectLayer(client, take_view(client))
        self.ops = Operations(self.layer)

    def flush(self) -> None:
        """What the runner's flusher does: hand the overlay to the client, sync, take a fresh view."""
        batch, taken = self.layer.take_batch()
        runner.apply_overlay(self.client, batch)
        assert self.client.synchronize_with_server_if_online(), self.client.error_message
        self.layer.set_view(take_view(self.client), taken)

    def server_objects(self) -> dict[str, dict]:
        answer = self.session.get('oaio_stampz/')
        assert answer.ok, answer.text
        return {obj['client_values'].get('_name'): obj for obj in answer.json()}

    def server_file(self, obj: dict, path: str) -> bytes | None:
        answer = self.session.get(f'files/{urllib.parse.quote(obj["oaio_id"], safe="")}/{obj["client_stamp"]}/'
                                  f'{urllib.parse.quote(path)}')
        return answer.content if answer.ok else None

    # handler shortcuts (ctx is not used by the handlers) ------------------------------------

    async def lookup(self, parent: int, name: str) -> pyfuse3.EntryAttributes:
        return await self.ops.lookup(parent, os.fsencode(name), None)

    async def write_file(self, parent: int, name: str, data: bytes) -> int:
        info, entry = await self.ops.create(parent, os.fsencode(name), 0o644, os.O_WRONLY | os.O_CREAT, None)
        assert await self.ops.write(info.fh, 0, data) == len(data)
        await self.ops.flush(info.fh)
        await self.ops.release(info.fh)
        return entry.st_ino

    async def read_file(self, inode: int, flags: int = os.O_RDONLY) -> bytes:
        info = await self.ops.open(inode, flags, None)
        try:
            return await self.ops.read(info.fh, 0, 1 << 20)
        finally:
            await self.ops.release(info.fh)

    async def write_values(self, obj_inode: int, text: bytes) -> None:
        entry = await self.lookup(obj_inode, 'values.json')
        info = await self.ops.open(entry.st_ino, os.O_WRONLY | os.O_TRUNC, None)
        try:
            await self.ops.write(info.fh, 0, text)
            await self.ops.flush(info.fh)
        finally:
            await self.ops.release(info.fh)


@pytest.fixture
def drive(server, api, tmp_path):
    session = api('alice')
    client = OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests',
                        device_id='handlers', client_root=str(tmp_path / 'cache'), auto_sync=False,
                        ignore_file=is_temp_path)
    try:
        yield Drive(client, session)
    finally:
        client.close()


def fuse_errno(raised) -> int:
    return raised.value.errno


def unexpected_records(caplog, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.levelno >= logging.ERROR and f'unexpected error in {name}' in record.getMessage()]


# the handlers work ------------------------------------------------------------------------------

def test_handlers_over_a_real_client(drive):
    async def main():
        ops = drive.ops
        root = await ops.getattr(ROOT_INODE, None)
        assert stat.S_ISDIR(root.st_mode)
        obj = await ops.mkdir(ROOT_INODE, b'notes', 0o755, None)
        assert stat.S_ISDIR(obj.st_mode) and obj.st_mode & 0o200
        assert (await drive.lookup(ROOT_INODE, 'notes')).st_ino == obj.st_ino
        # create + write + release, then open + read
        file_inode = await drive.write_file(obj.st_ino, 'a.txt', b'hello handlers\n')
        assert (await ops.getattr(file_inode, None)).st_size == 15
        assert await drive.read_file(file_inode) == b'hello handlers\n'
        # random offsets through an open handle
        info = await ops.open(file_inode, RW, None)
        await ops.write(info.fh, 6, b'HANDLERS')
        assert await ops.read(info.fh, 0, 100) == b'hello HANDLERS\n'
        await ops.release(info.fh)
        # a nested folder
        folder = await ops.mkdir(obj.st_ino, b'sub', 0o755, None)
        await drive.write_file(folder.st_ino, 'b.txt', b'nested')
        # values.json
        await drive.write_values(obj.st_ino, b'{"_name": "notes", "colour": "green"}')
        values_entry = await drive.lookup(obj.st_ino, 'values.json')
        assert json.loads(await drive.read_file(values_entry.st_ino)) == {'_name': 'notes', 'colour': 'green'}
        # rename within the object, and unlink
        await drive.write_file(obj.st_ino, 'tmp.txt', b'to be removed')
        await ops.rename(obj.st_ino, b'a.txt', obj.st_ino, b'renamed.txt', 0, None)
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await drive.lookup(obj.st_ino, 'a.txt')
        assert fuse_errno(raised) == errno.ENOENT
        renamed = await drive.lookup(obj.st_ino, 'renamed.txt')
        assert renamed.st_ino == file_inode                   # the inode moved with the name
        await ops.unlink(obj.st_ino, b'tmp.txt', None)
        assert [name for name, _ in drive.layer.list_directory(drive.ops.inodes.node(obj.st_ino))] \
            == ['values.json', 'renamed.txt', 'sub']
        # extended attributes and statfs
        assert await ops.getxattr(obj.st_ino, b'user.oaio.right', None) == b'C'
        assert await ops.getxattr(obj.st_ino, b'user.oaio.owner', None) == b'alice'
        oaio_id = (await ops.getxattr(obj.st_ino, b'user.oaio.id', None)).decode()
        assert await ops.getxattr(obj.st_ino, b'user.oaio.sync', None) == b'pending'
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await ops.getxattr(obj.st_ino, b'user.other', None)
        assert fuse_errno(raised) == pyfuse3.ENOATTR
        for other_namespace in (b'security.selinux', b'system.posix_acl_access', b'trusted.x'):
            # not "no such attribute" but "not supported": ls -l and cp -a then stop asking per file
            with pytest.raises(pyfuse3.FUSEError) as raised:
                await ops.getxattr(file_inode, other_namespace, None)
            assert fuse_errno(raised) == errno.ENOTSUP
        status = json.loads(await ops.getxattr(ROOT_INODE, b'user.oaio.status', None))
        assert status['objects'] == 1 and status['user'] == 'alice'
        stats = await ops.statfs(None)
        assert stats.f_bsize > 0 and stats.f_namemax == 255

        # the runner's flush takes it all to the server
        drive.flush()
        assert await ops.getxattr(obj.st_ino, b'user.oaio.sync', None) == b'synced'
        remote = drive.server_objects()['notes']
        assert remote['oaio_id'] == oaio_id
        assert remote['client_values']['colour'] == 'green'
        assert sorted(remote['client_values']['_file_paths']) == ['renamed.txt', 'sub/b.txt']
        assert drive.server_file(remote, 'renamed.txt') == b'hello HANDLERS\n'
        assert drive.server_file(remote, 'sub/b.txt') == b'nested'
        # the object directory is renamed: _name changes on the server
        await ops.rename(ROOT_INODE, b'notes', ROOT_INODE, b'journal', 0, None)
        assert (await drive.lookup(ROOT_INODE, 'journal')).st_ino == obj.st_ino
        drive.flush()
        assert set(drive.server_objects()) == {'journal'}
    trio.run(main)


def test_an_unlinked_file_is_let_go_at_once_unless_it_is_open(drive):
    """Unlink of a file nobody has open keeps no descriptor on it (its space is free at once, as on a
    local disk — the disk-full test deletes a file and writes the next at once); a file still open
    lives on unnamed: fstat and ftruncate through its inode keep working. A file renamed over is
    held while the kernel knows it (an open that looked it up just before the rename must work)."""
    async def main():
        ops = drive.ops
        obj = await ops.mkdir(ROOT_INODE, b'space', 0o755, None)
        closed = await drive.write_file(obj.st_ino, 'closed.bin', b'x' * 4096)
        await drive.lookup(obj.st_ino, 'closed.bin')            # the kernel knows the inode
        await ops.unlink(obj.st_ino, b'closed.bin', None)
        assert ops._detached == {}
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await ops.getattr(closed, None)
        assert fuse_errno(raised) == errno.ENOENT

        replaced = await drive.write_file(obj.st_ino, 'replaced.bin', b'old')
        await drive.write_file(obj.st_ino, 'new.bin', b'new')
        await ops.rename(obj.st_ino, b'new.bin', obj.st_ino, b'replaced.bin', 0, None)
        assert list(ops._detached) == [replaced]
        assert await drive.read_file(replaced) == b'old'        # the racing open of a reader
        await ops.forget([(replaced, 1)])                       # the kernel lets go: so do we
        assert ops._detached == {}

        still_open = await drive.write_file(obj.st_ino, 'open.bin', b'still readable')
        info = await ops.open(still_open, RW, None)
        await ops.unlink(obj.st_ino, b'open.bin', None)
        assert list(ops._detached) == [still_open]       # (replaced.bin's went with its FORGET)
        assert (await ops.getattr(still_open, None)).st_size == 14
        assert await ops.read(info.fh, 0, 100) == b'still readable'
        # what the kernel's SETATTR of ftruncate carries (pyfuse3's SetattrFields cannot be built here)
        fields = types.SimpleNamespace(update_size=True, update_mode=False, update_atime=False, update_mtime=False)
        attr = pyfuse3.EntryAttributes()
        attr.st_size = 5
        assert (await ops.setattr(still_open, attr, fields, info.fh, None)).st_size == 5
        await ops.release(info.fh)
    trio.run(main)


def test_a_write_after_a_rename_counts_for_the_new_name(drive):
    """A handle follows its file: written after a rename from a temp name (which never makes a
    version) or after a move into another object, the change is the new name's, and the next
    sync uploads it."""
    async def main():
        ops = drive.ops
        obj = await ops.mkdir(ROOT_INODE, b'dl', 0o755, None)
        other = await ops.mkdir(ROOT_INODE, b'other', 0o755, None)
        info, _ = await ops.create(obj.st_ino, b'report.txt~', 0o644, os.O_WRONLY | os.O_CREAT, None)
        await ops.write(info.fh, 0, b'one,')
        await ops.rename(obj.st_ino, b'report.txt~', obj.st_ino, b'report.txt', 0, None)
        drive.flush()
        assert drive.server_file(drive.server_objects()['dl'], 'report.txt') == b'one,'
        await ops.write(info.fh, 4, b'two,')                 # still open: now report.txt's change
        drive.flush()
        assert drive.server_file(drive.server_objects()['dl'], 'report.txt') == b'one,two,'

        await ops.rename(obj.st_ino, b'report.txt', other.st_ino, b'moved.txt', 0, None)
        drive.flush()
        await ops.write(info.fh, 8, b'three')                # in the other object now
        await ops.release(info.fh)
        drive.flush()
        objects = drive.server_objects()
        assert drive.server_file(objects['other'], 'moved.txt') == b'one,two,three'
        assert objects['dl']['client_values'].get('_file_paths', []) == []
    trio.run(main)


def test_a_one_file_write_in_a_many_file_object_hands_over_that_path_alone(drive, monkeypatch):
    """No walk, no hash of the others: the flush hands the client the one path written (and the
    rename's two), whatever the object's size."""
    handed: list[tuple[str, list, list]] = []
    take = drive.client.take_file_changes

    def counting(oaio_id, paths, renamed=()):
        handed.append((oaio_id, sorted(paths), list(renamed)))
        return take(oaio_id, paths, renamed)
    monkeypatch.setattr(drive.client, 'take_file_changes', counting)

    async def main():
        obj = await drive.ops.mkdir(ROOT_INODE, b'big', 0o755, None)
        for index in range(300):
            await drive.write_file(obj.st_ino, f'f{index:03d}.txt', b'same')
        drive.flush()
        oaio_id = drive.layer.object_id_by_name('big')
        assert len(handed) == 1 and len(handed[0][1]) == 300
        handed.clear()

        def no_walk(*args, **kwargs):
            raise AssertionError('the object was walked')
        monkeypatch.setattr('oaio.client.client.folder_files', no_walk)
        hashed = []
        real_hash = sync_module.hash_file
        monkeypatch.setattr(sync_module, 'hash_file', lambda path: hashed.append(path.name) or real_hash(path))
        inode = (await drive.lookup(obj.st_ino, 'f123.txt')).st_ino
        info = await drive.ops.open(inode, RW, None)
        await drive.ops.write(info.fh, 0, b'SAME')
        await drive.ops.release(info.fh)
        await drive.ops.rename(obj.st_ino, b'f200.txt', obj.st_ino, b'moved.txt', 0, None)
        drive.flush()
        assert handed == [(oaio_id, ['f123.txt', 'f200.txt', 'moved.txt'], [('f200.txt', 'moved.txt')])]
        assert hashed == ['f123.txt']
        server = drive.server_objects()['big']
        assert len(server['client_values']['_file_paths']) == 300
        assert drive.server_file(server, 'f123.txt') == b'SAME' and drive.server_file(server, 'moved.txt') == b'same'
    trio.run(main)


@pytest.mark.skipif(not EXTENDED_PYFUSE3 and not os.environ.get('OAIO_EXPECT_EXTENDED_PYFUSE3'),
                    reason='plain pyfuse3 (contrib/pyfuse3/build installs the one with the two flags)')
def test_with_the_extended_pyfuse3_closes_skip_flush_and_object_folders_are_cached(drive):
    """contrib/test installs pyfuse3 with noflush and cache_readdir (and says so in
    OAIO_EXPECT_EXTENDED_PYFUSE3, so that a plain one fails here rather than skip). Attached files
    are opened and created without FLUSH, values.json keeps it (close() reports invalid JSON);
    listings of object folders and their subfolders are cached, the drive's root is not."""
    assert EXTENDED_PYFUSE3, 'pyfuse3 without noflush/cache_readdir: run contrib/pyfuse3/build'

    async def main():
        ops = drive.ops
        obj = await ops.mkdir(ROOT_INODE, b'cached', 0o755, None)
        folder = await ops.mkdir(obj.st_ino, b'sub', 0o755, None)
        info, entry = await ops.create(obj.st_ino, b'a.txt', 0o644, os.O_WRONLY | os.O_CREAT, None)
        assert info.noflush
        await ops.release(info.fh)
        for flags in (os.O_RDONLY, os.O_RDWR):
            info = await ops.open(entry.st_ino, flags, None)
            assert info.noflush
            await ops.release(info.fh)
        values = await drive.lookup(obj.st_ino, 'values.json')
        info = await ops.open(values.st_ino, os.O_RDWR, None)
        assert not info.noflush and info.direct_io
        await ops.release(info.fh)
        for inode in (obj.st_ino, folder.st_ino):
            opened = await ops.opendir(inode, None)
            assert opened.cache_readdir and opened.keep_cache
            await ops.releasedir(opened.fh)
        opened = await ops.opendir(ROOT_INODE, None)
        assert isinstance(opened, int)
        await ops.releasedir(opened)
        # what the runner invalidates after a sync; a folder the kernel forgot is let go
        assert ops.cached_folders == {obj.st_ino, folder.st_ino}
        await ops.forget([(folder.st_ino, 1)])
        assert ops.cached_folders == {obj.st_ino}
    trio.run(main)


def test_access_judges_the_mode_bits_shown_as_the_kernel_would(drive):
    """The mount has no default_permissions, so access(2) is ours: the owner's bits for the owner,
    the group's for its group, the others' for anyone else, and root may read and write anything
    but execute only what has an x bit. (A mount is reached only by the user who made it; the
    other callers are asked here to check each class of bits.)"""
    async def main():
        ops = drive.ops
        obj = await ops.mkdir(ROOT_INODE, b'perm', 0o755, None)
        inode = await drive.write_file(obj.st_ino, 'f.sh', b'#!/bin/sh\n')
        values = (await drive.lookup(obj.st_ino, 'values.json')).st_ino
        uid, gid = 1000, 1000
        ops._owner = (uid, gid)                 # as if a user (not root) had mounted
        owner = types.SimpleNamespace(uid=uid, gid=gid, pid=os.getpid())
        group = types.SimpleNamespace(uid=uid + 1, gid=gid, pid=os.getpid())
        other = types.SimpleNamespace(uid=uid + 2, gid=gid + 2, pid=os.getpid())
        root = types.SimpleNamespace(uid=0, gid=0, pid=os.getpid())
        R, W, X = os.R_OK, os.W_OK, os.X_OK

        def chmod(mode: int) -> None:
            drive.layer.chmod(ops.inodes.node(inode), mode)

        async def allowed(ctx, mode: int, node: int = inode) -> bool:
            return await ops.access(node, mode, ctx)

        chmod(0o640)
        assert await allowed(owner, R | W) and not await allowed(owner, X)
        assert await allowed(group, R) and not await allowed(group, W)
        assert not await allowed(other, R) and await allowed(other, os.F_OK)
        assert await allowed(root, R | W) and not await allowed(root, X)
        chmod(0o751)
        assert await allowed(owner, R | W | X) and await allowed(group, R | X)
        assert await allowed(other, X) and not await allowed(other, R)
        assert await allowed(root, X)
        chmod(0o400)
        assert not await allowed(owner, W) and await allowed(owner, R)
        # directories and values.json of a writable object, the drive's root
        assert await allowed(owner, R | W | X, obj.st_ino) and not await allowed(other, W, obj.st_ino)
        assert await allowed(owner, R | W, values) and not await allowed(owner, X, values)
        assert await allowed(owner, W | X, ROOT_INODE) and await allowed(root, X, ROOT_INODE)
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await ops.access(123456, R, owner)
        assert fuse_errno(raised) == errno.ENOENT
        # chown: only root gives a file away (and ownership is not synchronized: root's is ignored)
        fields = types.SimpleNamespace(update_size=False, update_mode=False, update_atime=False,
                                       update_mtime=False, update_uid=True, update_gid=False)
        attr = pyfuse3.EntryAttributes()
        attr.st_uid = uid + 5
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await ops.setattr(inode, attr, fields, None, owner)
        assert fuse_errno(raised) == errno.EPERM
        assert (await ops.setattr(inode, attr, fields, None, root)).st_uid == uid
        attr.st_uid = uid
        assert (await ops.setattr(inode, attr, fields, None, owner)).st_uid == uid
    trio.run(main)


def test_known_errors_map_to_their_errno_without_an_error_log(drive, caplog):
    async def main():
        ops = drive.ops
        obj = await ops.mkdir(ROOT_INODE, b'box', 0o755, None)
        cases = [
            (errno.ENOENT, ops.lookup(ROOT_INODE, b'missing', None)),
            (errno.ENOENT, ops.lookup(obj.st_ino, b'missing.txt', None)),
            (errno.ENOENT, ops.getattr(123456789, None)),
            (errno.EEXIST, ops.mkdir(ROOT_INODE, b'box', 0o755, None)),
            (errno.EPERM, ops.create(ROOT_INODE, b'plain.txt', 0o644, os.O_WRONLY | os.O_CREAT, None)),
            (errno.EPERM, ops.symlink(obj.st_ino, b'link', b'/etc/passwd', None)),
            (errno.ENOENT, ops.unlink(obj.st_ino, b'missing.txt', None)),       # OSError from the cache
            (errno.ENAMETOOLONG, ops.mkdir(ROOT_INODE, b'x' * 300, 0o755, None)),   # over 255 bytes
            (errno.EINVAL, ops.mkdir(ROOT_INODE, b'x\x01y', 0o755, None)),     # ProtocolError: control character
        ]
        for code, call in cases:
            with pytest.raises(pyfuse3.FUSEError) as raised:
                await call
            assert fuse_errno(raised) == code, call
        # invalid JSON in values.json: EINVAL at flush, the previous values stay
        entry = await drive.lookup(obj.st_ino, 'values.json')
        info = await ops.open(entry.st_ino, os.O_WRONLY | os.O_TRUNC, None)
        await ops.write(info.fh, 0, b'{"broken": ')
        with pytest.raises(pyfuse3.FUSEError) as raised:
            await ops.flush(info.fh)
        assert fuse_errno(raised) == errno.EINVAL
        await ops.release(info.fh)              # judged once: release does not refuse again
        assert info.fh not in ops._handles
        assert json.loads(await drive.read_file(entry.st_ino)) == {'_name': 'box'}
    with caplog.at_level(logging.INFO, logger='oaio'):
        trio.run(main)
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
    assert 'values.json: not saved' in caplog.text


# injected faults --------------------------------------------------------------------------------

def boom(*args, **kwargs):
    raise RuntimeError('injected fault')


async def aboom(*args, **kwargs):
    raise RuntimeError('injected fault')


def test_an_exception_in_the_layer_becomes_a_logged_eio_and_the_next_call_works(drive, monkeypatch, caplog):
    async def main():
        ops = drive.ops
        obj = await ops.mkdir(ROOT_INODE, b'survivor', 0o755, None)
        file_inode = await drive.write_file(obj.st_ino, 'f.txt', b'content')
        handles = dict(ops._handles)

        async def expect_eio(name, call):
            caplog.clear()
            with pytest.raises(pyfuse3.FUSEError) as raised:
                await call
            assert fuse_errno(raised) == errno.EIO, name
            records = unexpected_records(caplog, name)
            assert len(records) == 1, caplog.text
            assert records[0].exc_info and 'injected fault' in str(records[0].exc_info[1])

        # getattr / lookup: attributes() fails
        monkeypatch.setattr(drive.layer, 'attributes', boom)
        await expect_eio('getattr', ops.getattr(file_inode, None))
        await expect_eio('lookup', ops.lookup(obj.st_ino, b'f.txt', None))
        monkeypatch.undo()
        assert (await ops.getattr(file_inode, None)).st_size == 7
        assert (await drive.lookup(obj.st_ino, 'f.txt')).st_ino == file_inode

        # open / create: the cache file cannot be opened
        monkeypatch.setattr(drive.layer, 'open_file', boom)
        await expect_eio('open', ops.open(file_inode, os.O_RDONLY, None))
        monkeypatch.setattr(drive.layer, 'create_file', boom)
        await expect_eio('create', ops.create(obj.st_ino, b'new.txt', 0o644, os.O_WRONLY | os.O_CREAT, None))
        assert ops._handles == handles                      # no handle leaked
        monkeypatch.undo()
        assert await drive.read_file(file_inode) == b'content'
        await drive.write_file(obj.st_ino, 'new.txt', b'created after the fault')

        # readdir's listing, mkdir, rename, unlink, getxattr, statfs
        monkeypatch.setattr(drive.layer, 'list_directory', boom)
        await expect_eio('opendir', ops.opendir(obj.st_ino, None))
        monkeypatch.setattr(drive.layer, 'mkdir', aboom)
        await expect_eio('mkdir', ops.mkdir(obj.st_ino, b'folder', 0o755, None))
        monkeypatch.setattr(drive.layer, 'rename', aboom)
        await expect_eio('rename', ops.rename(obj.st_ino, b'f.txt', obj.st_ino, b'g.txt', 0, None))
        monkeypatch.setattr(drive.layer, 'unlink', boom)
        await expect_eio('unlink', ops.unlink(obj.st_ino, b'new.txt', None))
        monkeypatch.setattr(drive.layer, 'xattr', boom)
        await expect_eio('getxattr', ops.getxattr(obj.st_ino, b'user.oaio.stamp', None))
        monkeypatch.setattr(drive.layer, 'write_values', aboom)
        entry = await drive.lookup(obj.st_ino, 'values.json')
        info = await ops.open(entry.st_ino, os.O_WRONLY | os.O_TRUNC, None)
        await ops.write(info.fh, 0, b'{"_name": "survivor", "k": 1}')
        await expect_eio('flush', ops.flush(info.fh))
        await ops.release(info.fh)              # the flush judged it; release does not try again
        monkeypatch.setattr(os, 'statvfs', boom)
        await expect_eio('statfs', ops.statfs(None))
        monkeypatch.undo()
        assert ops._handles == handles

        # every one works again, and nothing of the failed calls happened
        opened = await ops.opendir(obj.st_ino, None)
        fh = getattr(opened, 'fh', opened)      # a FileInfo with the extended pyfuse3
        assert [name for name, _ in ops._listings[fh]] == [b'values.json', b'f.txt', b'new.txt']
        await ops.releasedir(fh)
        await ops.mkdir(obj.st_ino, b'folder', 0o755, None)
        await ops.rename(obj.st_ino, b'f.txt', obj.st_ino, b'g.txt', 0, None)
        await ops.unlink(obj.st_ino, b'new.txt', None)
        assert await ops.getxattr(obj.st_ino, b'user.oaio.right', None) == b'C'
        await drive.write_values(obj.st_ino, b'{"_name": "survivor", "k": 2}')
        assert (await ops.statfs(None)).f_namemax == 255
        drive.flush()
        remote = drive.server_objects()['survivor']
        assert remote['client_values']['k'] == 2
        assert remote['client_values']['_file_paths'] == ['g.txt']
        assert drive.server_file(remote, 'g.txt') == b'content'
    with caplog.at_level(logging.INFO, logger='oaio'):
        trio.run(main)


# the same on a real mount served by a thread of this process ---------------------------------------

def test_an_injected_fault_on_a_real_mount_gives_eio_and_the_mount_stays_up(server, api, tmp_path, monkeypatch,
                                                                              caplog):
    session = api('alice')
    mountpoint = tmp_path / 'mnt'
    mountpoint.mkdir()
    client = OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests',
                        device_id='in-process', client_root=str(tmp_path / 'cache'), auto_sync=False,
                        ignore_file=is_temp_path)
    mount = runner.Mount(client, str(mountpoint))

    async def no_signals(self):          # signals can only be received in the main thread
        await trio.sleep_forever()
    monkeypatch.setattr(runner.Mount, '_stop_on_signal', no_signals)
    ended: list[BaseException | None] = []

    def serve():
        try:
            trio.run(mount.run)
            ended.append(None)
        except BaseException as exc:       # reported by the test
            ended.append(exc)
    thread = threading.Thread(target=serve, name='oaio-mount', daemon=True)
    original = ObjectLayer.open_file

    def faulty(self, node, flags):       # open always reaches the mount (no kernel cache answers it)
        if node.kind == 'path' and node.path == 'boom.txt':
            raise RuntimeError('injected fault')
        return original(self, node, flags)

    caplog.set_level(logging.INFO, logger='oaio')
    thread.start()
    try:
        deadline = time.monotonic() + 40
        while not os.path.ismount(mountpoint):
            assert not ended, f'the mount ended: {ended}'
            assert time.monotonic() < deadline, 'not mounted within 40 s'
            time.sleep(0.05)
        (mountpoint / 'obj').mkdir()
        (mountpoint / 'obj/boom.txt').write_bytes(b'boom')
        (mountpoint / 'obj/fine.txt').write_bytes(b'fine')
        monkeypatch.setattr(ObjectLayer, 'open_file', faulty)
        with pytest.raises(OSError) as raised:
            (mountpoint / 'obj/boom.txt').read_bytes()
        assert raised.value.errno == errno.EIO
        assert unexpected_records(caplog, 'open'), caplog.text
        with pytest.raises(OSError) as raised:
            open(mountpoint / 'obj/boom.txt', 'ab').close()
        assert raised.value.errno == errno.EIO
        # the mount is still up: other calls work, and the same one once the fault is gone
        assert (mountpoint / 'obj/fine.txt').read_bytes() == b'fine'
        (mountpoint / 'obj/after.txt').write_bytes(b'written after the fault')
        monkeypatch.setattr(ObjectLayer, 'open_file', original)
        assert os.stat(mountpoint / 'obj/boom.txt').st_size == 4
        assert (mountpoint / 'obj/boom.txt').read_bytes() == b'boom'
        assert os.path.ismount(mountpoint) and thread.is_alive()

        deadline = time.monotonic() + 30
        while True:
            objects = [obj for obj in session.get('oaio_stampz/').json() if obj['client_values'].get('_name') == 'obj']
            if objects and sorted(objects[0]['client_values'].get('_file_paths', [])) \
                    == ['after.txt', 'boom.txt', 'fine.txt']:
                break
            assert time.monotonic() < deadline, f'not on the server: {objects}'
            time.sleep(0.1)
    finally:
        monkeypatch.setattr(ObjectLayer, 'open_file', original)
        subprocess.run(['fusermount3', '-u', str(mountpoint)], capture_output=True, timeout=60)
        thread.join(timeout=40)
        if thread.is_alive() or os.path.ismount(mountpoint):
            subprocess.run(['fusermount3', '-u', '-z', str(mountpoint)], capture_output=True, timeout=60)
            thread.join(timeout=20)
        client.close()
    assert not thread.is_alive(), 'the mount thread did not end after fusermount3 -u'
    assert ended == [None], ended
    assert not os.path.ismount(mountpoint)


def test_the_flusher_signals_the_sync_task_once_per_burst_and_only_for_untaken_changes(drive):
    """A burst of writes becomes one signal on the channel, after the debounce; a batch the sync task
    has taken is not signalled again; the layer hands the batch over in one call."""
    async def main():
        to_sync, signals = trio.open_memory_channel(0)
        obj = await drive.ops.mkdir(ROOT_INODE, b'burst', 0o755, None)
        batch, seq = drive.layer.take_batch()
        assert batch.new and seq == drive.layer.seq and not drive.layer.has_untaken_changes()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runner.Flusher(drive.layer, to_sync).run)
            for index in range(20):
                await drive.write_file(obj.st_ino, f'f{index}.txt', b'x')
            with trio.fail_after(5):
                assert isinstance(await signals.receive(), runner.Flush)
            batch, _ = drive.layer.take_batch()
            assert sorted(batch.files[drive.layer.object_id_by_name('burst')]) == sorted(f'f{i}.txt' for i in range(20))
            with trio.move_on_after(runner.DEBOUNCE_SECONDS * 3) as quiet:
                await signals.receive()
            assert quiet.cancelled_caught, 'signalled again without a new change'
            await drive.write_file(obj.st_ino, 'late.txt', b'y')
            with trio.fail_after(5):
                assert isinstance(await signals.receive(), runner.Flush)
            nursery.cancel_scope.cancel()
    trio.run(main)


def test_the_sharing_xattrs_answer_while_a_sync_holds_the_client_and_time_out(drive, api, monkeypatch, caplog):
    """getxattr user.oaio.access and setxattr user.oaio.share ask the server without the client's
    lock: they answer while a sync holds it; a server too slow to answer gives ETIMEDOUT."""
    api('bob')

    async def main():
        obj = await drive.ops.mkdir(ROOT_INODE, b'shared', 0o755, None)
        drive.flush()
        held, release = threading.Event(), threading.Event()

        def long_sync():
            with drive.client._lock:            # what a sync of many files holds
                held.set()
                release.wait(30)
        syncing = threading.Thread(target=long_sync)
        syncing.start()
        try:
            assert held.wait(10)
            with trio.fail_after(20):
                await drive.ops.setxattr(obj.st_ino, b'user.oaio.share', b'bob:r', None)
                rows = json.loads(await drive.ops.getxattr(obj.st_ino, b'user.oaio.access', None))
            assert [(row['username'], row['access_right']) for row in rows] == [('alice', 'C'), ('bob', 'r')]
            monkeypatch.setattr(objects_module, 'SERVER_SECONDS', 0.2)
            monkeypatch.setattr(drive.client, 'access_list', lambda oaio_id: time.sleep(1) or [])
            with pytest.raises(pyfuse3.FUSEError) as raised:
                await drive.ops.getxattr(obj.st_ino, b'user.oaio.access', None)
            assert raised.value.errno == errno.ETIMEDOUT
            assert 'access list of shared: no answer in time' in caplog.text
        finally:
            release.set()
            syncing.join()
    trio.run(main)
