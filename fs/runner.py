"""The mount's runner: one trio nursery with ``pyfuse3.main``, the flusher (local changes → client
→ server) and the watcher (server → client → kernel caches).

Blocking client calls run in worker threads (one capacity limiter), so handlers never wait on a
sync; kernel caches are invalidated from these background tasks, never from inside a handler.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import time

import pyfuse3
import trio

from oaio.client import AuthenticationError, OaioClient, OfflineError
from oaio.client import protocol as p
from oaio.client.model import user_values

from .inodes import ROOT_INODE, Node
from .objects import ObjectLayer, Overlay
from .operations import Operations
from .view import View, take_view

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.2          # a burst of writes within this quiet time becomes one version
MAX_DELAY_SECONDS = 2.0         # ... but no change waits longer than this
POLL_SECONDS = 25.0             # one long poll
RETRY_SECONDS = (1, 2, 4, 8, 15, 30)
INITIAL_SYNC_SECONDS = 30.0     # a longer first sync goes on in the background after mounting
_limiter = trio.CapacityLimiter(4)


async def in_thread(function, *args):
    return await trio.to_thread.run_sync(function, *args, limiter=_limiter)


def apply_overlay(client: OaioClient, batch: Overlay) -> None:
    """Hand a batch of local changes to the client (blocking)."""
    for oaio_id in batch.removed:
        obj = client.object(oaio_id)
        if obj is None:
            continue
        if obj.csh_access_right in p.DELETE_RIGHTS or not obj.server_stamp:
            client.unregister_object(oaio_id, wipe_files=True)
        else:
            client.unsubscribe(oaio_id, client.user_name)
    registered = set()
    for oaio_id in batch.new:
        if oaio_id not in batch.removed and client.object(oaio_id) is None:
            # its files, if any, follow with the file changes below
            client.register_object(user_values(batch.values.get(oaio_id, (0, {}))[1]), oaio_id=oaio_id)
            registered.add(oaio_id)
    for oaio_id, (_, values) in batch.values.items():
        if oaio_id not in registered and oaio_id not in batch.removed and client.object(oaio_id) is not None:
            client.replace_values(oaio_id, values)      # values noted with the files they had then
    for oaio_id, paths in batch.files.items():
        if oaio_id not in batch.removed and client.object(oaio_id) is not None:
            moves = [(old, new) for _, old, new in batch.renamed.get(oaio_id, [])]
            client.take_file_changes(oaio_id, list(paths), moves)


def rescan_files(client: OaioClient) -> None:
    """Hand the client file changes a killed mount wrote to the cache but never handed over (blocking):
    the one full walk of every object, at the start."""
    for oaio_id, obj in client.client_objectz.items():
        if obj.csh_access_right in p.WRITE_RIGHTS:
            try:
                client.rescan_files(oaio_id)
            except (OSError, ValueError) as exc:
                log.warning('cannot take the files of %s: %s', oaio_id, exc)


class Mount:
    """Everything of one mounted drive."""

    def __init__(self, client: OaioClient, mountpoint: str):
        self.client, self.mountpoint = client, mountpoint
        self.layer: ObjectLayer | None = None
        self.operations: Operations | None = None
        self._views_taken = 0               # numbers the views in the order they were begun
        self._view_shown: tuple[int, View] | None = None

    async def refresh_view(self, taken_up_to: int = 0) -> None:
        """Show the client's objects. Views are taken in worker threads by the flusher and the
        watcher at once and may finish out of order: one begun earlier than the view shown may miss
        changes that view holds, so it is dropped (the shown view holds all up to ``taken_up_to``)."""
        self._views_taken += 1
        number = self._views_taken
        view = await in_thread(take_view, self.client)
        before = self._view_shown[1].objects if self._view_shown else {}
        if self._view_shown is None or number > self._view_shown[0]:
            self._view_shown = (number, view)
        self.layer.set_view(self._view_shown[1], taken_up_to)
        if self.operations is not None and self.operations.cached_folders:
            # a sync of the flusher may have pulled or merged versions too (the watcher invalidates
            # what it pulls itself): listings the kernel keeps of their folders are dropped now
            # rather than when it next finds the folder's mtime changed
            await self.invalidate_folders([oaio_id for oaio_id, info in view.objects.items()
                                           if oaio_id not in before or before[oaio_id].stamp != info.stamp])

    async def sync(self, taken_up_to: int | None = None) -> bool:
        """One synchronization, then (with ``taken_up_to``) a fresh view of its result. ``oaio status``
        learns the outcome only after the view: it never shows the error of a failed upload next to
        a view from before it, which counts nothing pending."""
        ok = await in_thread(self.client.synchronize_with_server_if_online)
        if not ok:
            log.warning('sync incomplete: %s', self.client.error_message)
        if taken_up_to is not None:
            await self.refresh_view(taken_up_to)
        self.layer.online = self.client.online
        self.layer.last_error = '' if ok else self.client.error_message
        return ok

    async def flush(self) -> None:
        """Hand every noted local change to the client, then sync."""
        layer = self.layer
        batch, taken_up_to = layer.overlay.copy(), layer.seq
        layer.changed = trio.Event()
        if batch:
            await in_thread(apply_overlay, self.client, batch)
        await self.sync(taken_up_to)

    async def run_flusher(self) -> None:
        while True:
            await self.layer.changed.wait()
            # wait for a quiet moment (no change for DEBOUNCE_SECONDS since waking or since the latest
            # change) by the time of the latest change, so the writes of a burst do not wake this task
            woken = time.monotonic()
            deadline = woken + MAX_DELAY_SECONDS
            while (wake := min(max(self.layer.last_change, woken) + DEBOUNCE_SECONDS, deadline)) > time.monotonic():
                await trio.sleep(max(0.0, wake - time.monotonic()))
            await self.flush()

    async def run_watcher(self) -> None:
        """Pull remote changes as they happen (long poll); retry with back-off while offline."""
        failures = 0
        while True:
            try:
                changed = await trio.to_thread.run_sync(self.client.wait_for_remote_changes, POLL_SECONDS,
                                                        abandon_on_cancel=True)
                failures = 0
                self.layer.online = True
            except (OfflineError, AuthenticationError) as exc:
                self.layer.online = False
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.info('server not reachable (%s); retrying in %d s', exc, delay)
                await trio.sleep(delay)
                await self.flush()
                continue
            if changed:
                await self.refresh_view()
                await self.invalidate(changed)
            # back online, or a pulled version was merged with local edits: the client holds versions
            # no local change will flush, so push them now
            if any(self.layer.info(oaio_id).sync == 'pending' for oaio_id in self.layer.oaio_ids()):
                self.layer.changed.set()

    async def invalidate(self, oaio_ids: list[str]) -> None:
        """Drop what the kernel caches of changed objects, so the next open sees the new content."""
        table = self.operations.inodes
        for oaio_id in oaio_ids:
            for inode, node in table.known(oaio_id):
                await in_thread(_invalidate_inode, inode)
                parent = table.inode(self.layer.parent(node)) if node.kind != 'object' else ROOT_INODE
                name = node.path.rsplit('/', 1)[-1] if node.kind == 'path' else None
                if node.kind == 'values':
                    name = p.VALUES_FILE
                if name:
                    pyfuse3.invalidate_entry_async(parent, os.fsencode(name), ignore_enoent=True)
        for name in list(self._root_names()):
            pyfuse3.invalidate_entry_async(ROOT_INODE, os.fsencode(name), ignore_enoent=True)
        await in_thread(_invalidate_inode, ROOT_INODE)

    async def invalidate_folders(self, oaio_ids: list[str]) -> None:
        """Drop the listings (and attributes) the kernel keeps of these objects' folders, not their files."""
        changed = set(oaio_ids)
        table = self.operations.inodes
        for inode in [inode for inode in self.operations.cached_folders
                      if (node := table.node(inode)) is not None and node.oaio_id in changed]:
            await in_thread(_invalidate_inode, inode)

    def _root_names(self):
        return [self.layer.info(oaio_id).name for oaio_id in self.layer.oaio_ids()]

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Mount, serve until unmounted or signalled, then hand over pending changes and unmount."""
        saved = Overlay.saved(self.client.client_root)        # a killed mount's last object changes
        if saved:
            log.info('taking the object changes of the last mount that it had not handed over')
            await in_thread(apply_overlay, self.client, saved)
            Overlay().save(self.client.client_root)             # the client has them now
        await in_thread(rescan_files, self.client)
        self.layer = ObjectLayer(self.client, await in_thread(take_view, self.client))
        with trio.move_on_after(INITIAL_SYNC_SECONDS):      # show the objects at once when we can
            await self.flush()
        self.operations = Operations(self.layer)
        # auto_unmount: if this process dies, fusermount3 unmounts, so no dead mountpoint stays.
        # No default_permissions: only the user who mounted reaches the mount (no allow_other), this
        # process runs as that user, so the cache's own files check the mode bits of every open,
        # create and unlink, the object layer refuses writes to read-only shares, and access(2) is
        # answered by Operations.access. With it the kernel asked for the parent's attributes again
        # after every create (each create invalidates them): one request in four of a create.
        options = {'fsname=oaio', 'subtype=oaio', 'auto_unmount'}     # not pyfuse3.default_options
        pyfuse3.init(self.operations, self.mountpoint, options)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_until_unmounted, nursery)
                nursery.start_soon(self.run_flusher)
                nursery.start_soon(self.run_watcher)
                nursery.start_soon(self._stop_on_signal)
                task_status.started()
        finally:
            pyfuse3.close(unmount=True)
            with trio.move_on_after(20):
                await self.drain()

    async def drain(self) -> None:
        """Persist every pending change in the client store and try one last upload."""
        batch = self.layer.overlay.copy()
        if batch:
            await in_thread(apply_overlay, self.client, batch)
            Overlay().save(self.client.client_root)         # the client store has them now
        await self.sync()

    async def _serve_until_unmounted(self, nursery: trio.Nursery) -> None:
        await pyfuse3.main()
        nursery.cancel_scope.cancel()

    async def _stop_on_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                log.info('%s: unmounting %s', signal.Signals(signum).name, self.mountpoint)
                pyfuse3.terminate()
                return


def _invalidate_inode(inode: int) -> None:
    try:
        pyfuse3.invalidate_inode(inode, attr_only=False)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise


__all__ = ['Mount', 'apply_overlay', 'Node']
