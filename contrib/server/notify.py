"""Wake-ups for long polls: one watcher per server process, cheap however many clients wait.

Waiting clients hold no thread and no database connection: each waits on an ``asyncio.Event``.
While anyone waits, one task per process reads the change rows committed since it last looked
(at once after a commit in this process; every ``OAIO_FEED_POLL_INTERVAL`` seconds for commits of
other processes) and sets the events of the users those rows belong to. Other server processes
behind the same database are thus seen within one poll interval; commits of this process at once.
On SQLite a poll first asks ``PRAGMA data_version`` of a connection of its own (microseconds, in
the event loop) and queries the change rows only when some connection committed since: a waiting
client no longer costs the idle server 20 queries a second.
"""
import asyncio
import contextlib
import logging
import sqlite3
import threading

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Max

from .models import Change

_BATCH = 10000
log = logging.getLogger(__name__)


def _max_seq() -> int:
    close_old_connections()
    return Change.objects.aggregate(last=Max('seq'))['last'] or 0


def _users_changed_after(seq: int) -> tuple[int, set]:
    close_old_connections()
    rows = list(Change.objects.filter(seq__gt=seq).order_by('seq').values_list('seq', 'user_id')[:_BATCH])
    return (rows[-1][0] if rows else seq), {user_id for _, user_id in rows}


class _CommitProbe:
    """Whether anything may have been committed since the last look: always, except on SQLite,
    where ``PRAGMA data_version`` of this probe's own connection changes with every commit of any
    other connection, of this process or another."""

    def __init__(self):
        database = settings.DATABASES['default']
        self._connection = None
        self._version = None
        if database['ENGINE'] == 'django.db.backends.sqlite3':
            # timeout 0: this runs in the event loop, which must never wait for a lock
            self._connection = sqlite3.connect(database['NAME'], timeout=0)
            self._version = self._data_version()

    def _data_version(self) -> int | None:
        try:
            return self._connection.execute('PRAGMA data_version').fetchone()[0]
        except sqlite3.OperationalError:        # busy (WAL recovery): unknown, so look at the rows
            return None

    def changed(self) -> bool:
        """Read before the change rows are, so a commit in between is seen now or next time."""
        if self._connection is None:
            return True
        version, self._version = self._version, self._data_version()
        return version is None or version != self._version

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


class ChangeWatcher:
    """Tells waiting long polls of this process that their user has new changes."""

    def __init__(self, poll_interval: float):
        self.poll_interval = poll_interval
        self._events: dict[int, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poke: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._started: asyncio.Event | None = None
        self._last_seq = 0
        self._lock = threading.Lock()
        self.closing = False        # the server is stopping: long polls answer at once

    @contextlib.asynccontextmanager
    async def listening(self, user_id: int):
        """Register an event that is set whenever ``user_id`` gets a change.

        Returns only once the watcher has read its baseline, so that a query the caller makes
        afterwards and the watcher's next look together cannot miss a commit.
        """
        event = asyncio.Event()
        self._events.setdefault(user_id, set()).add(event)
        try:
            await self._ensure_running()
            yield event
        finally:
            waiting = self._events.get(user_id, set())
            waiting.discard(event)
            if not waiting:
                self._events.pop(user_id, None)

    def poke_threadsafe(self) -> None:
        """Look for new changes now (called after a commit, from any thread)."""
        with self._lock:
            loop, poke = self._loop, self._poke
        if loop is not None and poke is not None and not loop.is_closed():
            loop.call_soon_threadsafe(poke.set)

    def close_threadsafe(self) -> None:
        """The server is stopping: wake every waiting long poll so that it answers now.

        Called from the signal handler, so it takes no lock (the handler may interrupt its holder).
        """
        self.closing = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    async def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            with self._lock:
                self._loop = asyncio.get_running_loop()
                self._poke = asyncio.Event()
            self._started = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._started))
        await self._started.wait()

    async def _run(self, started: asyncio.Event) -> None:
        # On a database error the waiters still answer when their wait times out.
        probe = None
        try:
            probe = _CommitProbe()          # before the baseline: no commit falls between the two
            self._last_seq = await sync_to_async(_max_seq, thread_sensitive=False)()
            started.set()
            await self._watch(probe)
        except Exception:
            log.exception('change watcher failed; long polls fall back to their timeout')
        finally:
            started.set()
            if probe is not None:
                probe.close()

    async def _watch(self, probe: _CommitProbe) -> None:
        while self._events:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.poll_interval)
            poked = self._poke.is_set()
            self._poke.clear()
            if not probe.changed() and not poked:
                continue
            self._last_seq, users = await sync_to_async(_users_changed_after, thread_sensitive=False)(self._last_seq)
            for user_id in users:
                for event in self._events.get(user_id, ()):
                    event.set()


watcher = ChangeWatcher(settings.OAIO_FEED_POLL_INTERVAL)


def notify_commit() -> None:
    """transaction.on_commit hook: wake this process's watcher at once."""
    watcher.poke_threadsafe()
