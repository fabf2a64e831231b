"""The mount's runner: one trio nursery with ``pyfuse3.main`` and three jobs — the sync task, which
alone uses the client (local changes → client → server, server → client → kernel caches), and the
flusher and the watcher, which only signal it over a memory channel: "these local changes are
ready" (after a debounce), "the change feed has news", "offline, try again".

Blocking client calls run in worker threads (one capacity limiter), so handlers never wait on a
sync; kernel caches are invalidated from the sync task, never from inside a handler.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass

import pyfuse3
import trio

from oaio.client import AuthenticationError, OaioClient, OaioError, OfflineError
from oaio.client import protocol as p
from oaio.client.model import user_values

from .inodes import ROOT_INODE, Node
from .objects import MountStatus, ObjectLayer, Overlay
from .operations import Operations
from .view import ObjectInfo, object_info, take_view

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.2          # a burst of writes within this quiet time becomes one version
MAX_DELAY_SECONDS = 2.0         # ... but no change waits longer than this
POLL_SECONDS = 25.0             # one long poll
RETRY_SECONDS = (1, 2, 4, 8, 15, 30)
INITIAL_SYNC_SECONDS = 30.0     # the hand-over time: a longer first sync goes on after mounting (see first_sync_time)
ARRIVAL_SECONDS = 0.1           # objects a sync applies are shown in batches at most this far apart
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


@dataclass(frozen=True)
class Flush:
    """Local changes are ready (the flusher, after a quiet moment), or try again (the watcher, offline)."""


@dataclass(frozen=True)
class News:
    """The change feed has news (:meth:`OaioClient.wait_for_news`'s answer)."""

    news: dict


@dataclass(frozen=True)
class Offline:
    """The change feed cannot be reached."""

    reason: str


class Flusher:
    """Waits for local changes and, once they have been quiet for a moment, tells the sync task."""

    def __init__(self, layer: ObjectLayer, to_sync: trio.MemorySendChannel):
        self.layer, self.to_sync = layer, to_sync

    async def run(self) -> None:
        while True:
            await self.layer.wait_untaken_changes()
            # wait for a quiet moment (no change for DEBOUNCE_SECONDS since waking or since the latest
            # change) by the time of the latest change, so the writes of a burst do not wake this task
            woken = time.monotonic()
            deadline = woken + MAX_DELAY_SECONDS
            while (wake := min(max(self.layer.last_change, woken) + DEBOUNCE_SECONDS, deadline)) > time.monotonic():
                await trio.sleep(max(0.0, wake - time.monotonic()))
            if self.layer.has_untaken_changes():        # not taken meanwhile by a flush of the sync task
                await self.to_sync.send(Flush())


class Watcher:
    """Long-polls the change feed (applying nothing) and hands what it finds to the sync task;
    retries with back-off while offline."""

    def __init__(self, client: OaioClient, to_sync: trio.MemorySendChannel):
        self.client, self.to_sync = client, to_sync

    async def run(self) -> None:
        failures, cursor = 0, ''
        while True:
            try:
                news = await trio.to_thread.run_sync(self.client.wait_for_news, POLL_SECONDS, cursor,
                                                     abandon_on_cancel=True)
            except (OfflineError, AuthenticationError) as exc:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                log.info('server not reachable (%s); retrying in %d s', exc, delay)
                await self.to_sync.send(Offline(str(exc)))
                await trio.sleep(delay)
                await self.to_sync.send(Flush())
                continue
            failures = 0
            # the sync task may apply the news after the next poll began: it is not to be found again
            cursor = str(news['answer'].get('cursor', '')) if news else ''
            await self.to_sync.send(News(news or {}))


class Mount:
    """Everything of one mounted drive; :meth:`run_sync_task` is the one task that uses the client."""

    def __init__(self, client: OaioClient, mountpoint: str, first_sync_seconds: float | None = None):
        self.client, self.mountpoint = client, mountpoint
        self.first_sync_seconds = first_sync_time() if first_sync_seconds is None else first_sync_seconds
        self.status = MountStatus()
        self.layer: ObjectLayer | None = None
        self.operations: Operations | None = None
        self.mounted = False                # pyfuse3.init done: the kernel's caches may be invalidated
        # objects a sync has applied, not shown yet (from the syncing thread to show_arrivals)
        self._arrived: dict[str, ObjectInfo | None] = {}
        self._arrived_lock = threading.Lock()
        self._arrival = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    # the sync task ---------------------------------------------------------------------------

    async def run_sync_task(self, signals: trio.MemoryReceiveChannel, first_sync_done: trio.Event) -> None:
        await self.flush()          # the first sync: the mount waits for it up to the hand-over time
        first_sync_done.set()
        async for signal_ in signals:
            if isinstance(signal_, Flush):
                await self.flush()
            elif isinstance(signal_, Offline):
                self.status.contact(False)
            else:
                await self.take_news(signal_.news)

    async def take_news(self, news: dict) -> None:
        """Apply what the watcher found, show it, and drop what the kernel caches of it."""
        changed = []
        if news:
            try:
                changed = await in_thread(self.client.apply_news, news)
            except (OfflineError, AuthenticationError) as exc:
                # as when the long poll itself fails: the watcher's next poll retries with back-off
                log.info('server not reachable (%s); remote changes not taken yet', exc)
                self.status.contact(False)
                return
            except OaioError as exc:
                log.warning('remote changes not taken: %s', exc)
                return
        self.status.contact(True)
        if changed:
            await self.refresh_view()
            await self.invalidate(changed)
        # back online, or a pulled version was merged with local edits: the client holds versions
        # no local change will flush, so push them now
        if self.layer.has_pending():
            await self.flush()

    async def flush(self) -> None:
        """Hand every noted local change to the client, then sync."""
        batch, taken_up_to = self.layer.take_batch()
        if batch:
            await in_thread(apply_overlay, self.client, batch)
        await self.sync(taken_up_to)

    async def sync(self, taken_up_to: int | None = None) -> bool:
        """One synchronization, then (with ``taken_up_to``) a fresh view of its result. ``oaio status``
        learns the outcome only after the view: it never shows the error of a failed upload next to
        a view from before it, which counts nothing pending."""
        ok = await in_thread(self.client.synchronize_with_server_if_online)
        if not ok:
            log.warning('sync incomplete: %s', self.client.error_message)
        if taken_up_to is not None:
            await self.refresh_view(taken_up_to)
        self.status.contact(self.client.online, '' if ok else self.client.error_message)
        return ok

    async def refresh_view(self, taken_up_to: int = 0) -> None:
        """Show the client's objects (the view holds every local change numbered up to ``taken_up_to``)."""
        with self._arrived_lock:            # the sync is over: the view below holds them all
            self._arrived.clear()
        before = self.layer.view_stamps()
        self.layer.set_view(await in_thread(take_view, self.client), taken_up_to)
        if self.mounted:
            # a sync may have pulled or merged versions too (news are invalidated where they are
            # taken): listings the kernel keeps of their folders are dropped now rather than when it
            # next finds the folder's mtime changed
            after = self.layer.view_stamps()
            await self.invalidate_folders([oaio_id for oaio_id, stamp in after.items() if before.get(oaio_id) != stamp])

    # objects as a sync applies them -----------------------------------------------------------

    def applied(self, oaio_ids: list[str]) -> None:
        """In the syncing thread, the client's lock held: a pulled change was applied to these
        objects. Their new state is queued for :meth:`show_arrivals`, so a long sync (the first one
        above all) shows each object as it arrives, not only at its end."""
        try:
            infos = {}
            for oaio_id in oaio_ids:
                obj = self.client.object(oaio_id)
                infos[oaio_id] = object_info(self.client, obj) if obj is not None else None
            with self._arrived_lock:
                wake = not self._arrived
                self._arrived.update(infos)
            if wake:
                self._token.run_sync_soon(self._wake_arrivals)
        except trio.RunFinishedError:
            pass
        except (OaioError, OSError) as exc:         # shown with the view at the sync's end
            log.info('cannot show %s before the sync ends: %s', oaio_ids, exc)

    def _wake_arrivals(self) -> None:
        self._arrival.set()

    async def show_arrivals(self) -> None:
        """Show the objects queued by :meth:`applied`, in batches (a view is composed per batch)."""
        while True:
            await self._arrival.wait()
            self._arrival = trio.Event()
            with self._arrived_lock:
                infos, self._arrived = self._arrived, {}
            if infos:
                names = self.layer.names_of(infos)
                self.layer.show_objects(infos)
                if self.mounted:
                    await self.invalidate(list(infos), names | self.layer.names_of(infos))
            await trio.sleep(ARRIVAL_SECONDS)

    # the kernel's caches ---------------------------------------------------------------------

    async def invalidate(self, oaio_ids: list[str], names: set[str] | None = None) -> None:
        """Drop what the kernel caches of changed objects, so the next open sees the new content
        (and the drive's entries named ``names``, all of them if None)."""
        for inode, parent, name in self.operations.kernel_entries(oaio_ids):
            await in_thread(_invalidate_inode, inode)
            if name:
                pyfuse3.invalidate_entry_async(parent, os.fsencode(name), ignore_enoent=True)
        for name in self.layer.object_names() if names is None else names:
            pyfuse3.invalidate_entry_async(ROOT_INODE, os.fsencode(name), ignore_enoent=True)
        await in_thread(_invalidate_inode, ROOT_INODE)

    async def invalidate_folders(self, oaio_ids: list[str]) -> None:
        """Drop the listings (and attributes) the kernel keeps of these objects' folders, not their files."""
        for inode in self.operations.cached_folders_of(oaio_ids):
            await in_thread(_invalidate_inode, inode)

    # running ---------------------------------------------------------------------------------

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Mount, serve until unmounted or signalled, then hand over pending changes and unmount."""
        saved = Overlay.saved(self.client.client_root)        # a killed mount's last object changes
        if saved:
            log.info('taking the object changes of the last mount that it had not handed over')
            await in_thread(apply_overlay, self.client, saved)
            Overlay().save(self.client.client_root)             # the client has them now
        await in_thread(rescan_files, self.client)
        self.layer = ObjectLayer(self.client, await in_thread(take_view, self.client), self.status)
        self.operations = Operations(self.layer)
        self._token = trio.lowlevel.current_trio_token()
        self.client.report_applied(self.applied)
        to_sync, signals = trio.open_memory_channel(0)
        first_sync_done = trio.Event()
        failure = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.show_arrivals)
                nursery.start_soon(self.run_sync_task, signals, first_sync_done)
                # show the objects at once when we can; a longer first sync goes on after mounting,
                # and its objects appear as they arrive
                with trio.move_on_after(self.first_sync_seconds):
                    await first_sync_done.wait()
                if not first_sync_done.is_set():
                    log.info('the first sync takes longer than %g s: mounting, objects appear as they arrive',
                             self.first_sync_seconds)
                try:
                    self._mount()
                except Exception as exc:    # raised alone after the nursery, not in an exception group
                    failure = exc
                    nursery.cancel_scope.cancel()
                    return
                nursery.start_soon(self._serve_until_unmounted, nursery)
                nursery.start_soon(Flusher(self.layer, to_sync.clone()).run)
                nursery.start_soon(Watcher(self.client, to_sync.clone()).run)
                nursery.start_soon(self._stop_on_signal)
                task_status.started()
        finally:
            self.client.report_applied(None)
            if self.mounted:
                pyfuse3.close(unmount=True)
                with trio.move_on_after(20):
                    await self.drain()
            if failure is not None:
                raise failure

    def _mount(self) -> None:
        # auto_unmount: if this process dies, fusermount3 unmounts, so no dead mountpoint stays.
        # No default_permissions: only the user who mounted reaches the mount (no allow_other), this
        # process runs as that user, so the cache's own files check the mode bits of every open,
        # create and unlink, the object layer refuses writes to read-only shares, and access(2) is
        # answered by Operations.access. With it the kernel asked for the parent's attributes again
        # after every create (each create invalidates them): one request in four of a create.
        options = {'fsname=oaio', 'subtype=oaio', 'auto_unmount'}     # not pyfuse3.default_options
        pyfuse3.init(self.operations, self.mountpoint, options)
        self.mounted = True

    async def drain(self) -> None:
        """Persist every pending change in the client store and try one last upload (the sync task
        has ended with the nursery)."""
        batch, _ = self.layer.take_batch()
        if batch:
            await in_thread(apply_overlay, self.client, batch)
            Overlay().save(self.client.client_root)         # the client store has them now
        await self.sync()

    async def _serve_until_unmounted(self, nursery: trio.Nursery) -> None:
        await pyfuse3.main()
        nursery.cancel_scope.cancel()

    async def _stop_on_signal(self) -> None:
        """SIGTERM and SIGINT unmount; SIGHUP reopens the log files (after logrotate moved them),
        as daemons do, instead of ending the drive."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    reopen_log_files()
                    log.info('SIGHUP: log files reopened')
                    continue
                log.info('%s: unmounting %s', signal.Signals(signum).name, self.mountpoint)
                pyfuse3.terminate()
                return


def first_sync_time() -> float:
    """The hand-over time: how long ``oaio mount`` waits for its first sync before it mounts
    (``$OAIO_FIRST_SYNC_SECONDS``, else :data:`INITIAL_SYNC_SECONDS`)."""
    try:
        return max(0.0, float(os.environ.get('OAIO_FIRST_SYNC_SECONDS', INITIAL_SYNC_SECONDS)))
    except ValueError:
        log.warning('OAIO_FIRST_SYNC_SECONDS is no number of seconds; %g s it is', INITIAL_SYNC_SECONDS)
        return INITIAL_SYNC_SECONDS


def reopen_log_files() -> None:
    """Close the root logger's file handlers; each opens its file again at its next record (a
    FileHandler in append mode does), so a log moved away by logrotate is followed by a new one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.close()


def _invalidate_inode(inode: int) -> None:
    try:
        pyfuse3.invalidate_inode(inode, attr_only=False)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EINVAL):
            raise


__all__ = ['Mount', 'apply_overlay', 'Node']
