"""Wake-ups for long polls: one watcher per server process, cheap however many clients wait.

Waiting clients hold no thread and no database connection: each waits on an ``asyncio.Event``.
While anyone waits, one task per process reads the change rows committed since it last looked
(at once after a commit in this process; after a commit of another process as described below)
and sets the events of the users those rows belong to.

How commits of other server processes behind the same database are noticed:

- SQLite: every ``OAIO_FEED_POLL_INTERVAL`` seconds the watcher asks ``PRAGMA data_version`` of a
  connection of its own (microseconds, in the event loop) and queries the change rows only when
  some connection committed since.
- PostgreSQL: every transaction that records a change also sends ``NOTIFY`` on :data:`CHANNEL`
  (:func:`announce_change`), which the database delivers at its commit and never after a rollback.
  While anyone waits, the watcher holds one connection of its own that LISTENs on the channel and
  looks at the change rows when a notification of another process arrives. It also looks every
  ``OAIO_FEED_FALLBACK_INTERVAL`` seconds (a missed notification costs at most that much), and
  every ``OAIO_FEED_POLL_INTERVAL`` seconds while its LISTEN connection is down; it reconnects
  on its own.
- Any other database: every ``OAIO_FEED_POLL_INTERVAL`` seconds.
"""
import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import threading

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import Max

from .models import Change

_BATCH = 10000
CHANNEL = 'oaio_changes'                # the NOTIFY channel of change-recording commits (PostgreSQL)
_RETRY_DELAYS = (0.5, 1, 2, 5, 10)      # seconds before each reconnect of the LISTEN connection
_INSTANCE = secrets.token_hex(8)
log = logging.getLogger(__name__)


def _sender() -> str:
    """Who sends a notification: this process (the pid tells forked processes apart, the random
    part processes on different hosts). A watcher skips its own process's notifications: the
    on_commit hook (:func:`notify_commit`) has poked it already, without a round trip."""
    return f'{os.getpid()}.{_INSTANCE}'


def announce_change(connection) -> None:
    """Tell the watchers of all server processes about the change rows of the current transaction.

    Called inside that transaction. On PostgreSQL it issues ``pg_notify`` there, rather than from an
    on_commit hook: the database delivers it exactly when the transaction commits (so listeners can
    read the rows at once), never after a rollback, and even if this process dies right after the
    commit. Elsewhere it does nothing (SQLite's watchers see commits through ``data_version``).
    """
    if connection.vendor == 'postgresql':
        with connection.cursor() as cursor:
            cursor.execute('SELECT pg_notify(%s, %s)', [CHANNEL, _sender()])


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


def _is_postgresql() -> bool:
    return connections['default'].vendor == 'postgresql'       # no query, no connection


def _listen_params() -> dict:
    """Connection parameters for the LISTEN connection: Django's own for the database (host,
    credentials, OPTIONS such as sslmode), minus what only Django's connections use."""
    params = connections['default'].get_connection_params()
    for django_only in ('cursor_factory', 'context', 'prepare_threshold'):
        params.pop(django_only, None)
    params.setdefault('application_name', 'oaio change watcher')
    params.setdefault('connect_timeout', 10)
    # a connection that dies silently (network gone, no RST) is noticed within about a minute
    for key, value in (('keepalives', 1), ('keepalives_idle', 30), ('keepalives_interval', 10),
                       ('keepalives_count', 3)):
        params.setdefault(key, value)
    return params


class _Listener:
    """PostgreSQL: one connection of the watcher's own that LISTENs on :data:`CHANNEL` and calls
    ``poke`` for every notification of another process; reconnects when the connection fails.

    How it waits without blocking the event loop: the connection's socket is registered with the
    loop's reader (``loop.add_reader``); when the database sends something, the callback lets libpq
    read it (non-blocking) and takes the notifications out, as psycopg's own ``notifies()``
    generator does. So the process wakes only when the database sends. (``AsyncConnection.notifies()``
    waits on the same reader but also wakes every 0.1 s to look for interrupts; a thread blocked in
    the sync ``notifies(timeout=...)`` would cost a thread and wake every timeout.) Connecting and
    LISTEN use psycopg's AsyncConnection, in the loop too.
    """

    def __init__(self, poke):
        self.listening = False      # LISTEN is in effect: notifications of commits from now on arrive
        self._poke = poke
        self._tried = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start listening; returns after the first attempt to connect, successful or not."""
        self._task = asyncio.create_task(self._run())
        await self._tried.wait()

    def close(self) -> None:
        """Stop (without waiting: the connection closes as the cancelled task unwinds)."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        import psycopg
        try:
            params = await sync_to_async(_listen_params, thread_sensitive=False)()
            failures = 0
            while True:
                conn, delay = None, _RETRY_DELAYS[0]
                try:
                    conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
                    await conn.execute(f'LISTEN {CHANNEL}')
                    self.listening = True
                    self._tried.set()
                    if failures:
                        log.info('change watcher: listening for commits of other server processes again')
                        self._poke()            # notifications may have been missed meanwhile: look now
                    failures = 0
                    await self._receive(conn.pgconn)
                except (psycopg.Error, OSError) as exc:
                    delay = _RETRY_DELAYS[min(failures, len(_RETRY_DELAYS) - 1)]
                    what = 'lost its LISTEN connection' if self.listening else 'cannot LISTEN'
                    log.warning('change watcher %s (%s); looking for commits every %s s; reconnecting in %s s',
                                what, ' '.join(str(exc).split()) or type(exc).__name__,
                                settings.OAIO_FEED_POLL_INTERVAL, delay)
                    if self.listening:
                        self.listening = False
                        self._poke()            # look now, then every poll interval until reconnected
                    failures += 1
                    self._tried.set()
                finally:
                    if conn is not None:
                        await conn.close()      # no network round trip, also after a cancel
                await asyncio.sleep(delay)
        except Exception:
            log.exception('change watcher stops listening; it looks for commits every %s s',
                          settings.OAIO_FEED_POLL_INTERVAL)
        finally:
            self.listening = False
            self._tried.set()

    async def _receive(self, pgconn) -> None:
        """Poke for each notification of another process until the connection fails (raises)."""
        import psycopg
        loop = asyncio.get_running_loop()
        failed = loop.create_future()
        me, fd = _sender().encode(), pgconn.socket

        def readable() -> None:
            try:
                pgconn.consume_input()          # reads what has arrived; never blocks
                while (notification := pgconn.notifies()) is not None:
                    if notification.extra != me:
                        self._poke()
            except psycopg.Error as exc:        # the connection is gone
                loop.remove_reader(fd)
                if not failed.done():
                    failed.set_exception(exc)

        loop.add_reader(fd, readable)
        try:
            readable()                          # anything that came with the answer to LISTEN
            await failed
        finally:
            loop.remove_reader(fd)


class ChangeWatcher:
    """Tells waiting long polls of this process that their user has new changes."""

    def __init__(self, poll_interval: float, fallback_interval: float):
        self.poll_interval = poll_interval
        self.fallback_interval = fallback_interval      # PostgreSQL, while LISTEN is in effect
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

    def waiting(self) -> int:
        """Long polls of this process now waiting (call it in the event loop)."""
        return sum(len(events) for events in self._events.values())

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
        probe = listener = None
        try:
            # both before the baseline: no commit falls between them and it
            probe = _CommitProbe()
            if _is_postgresql():
                listener = _Listener(self._poke.set)
                await listener.start()
            self._last_seq = await sync_to_async(_max_seq, thread_sensitive=False)()
            started.set()
            await self._watch(probe, listener)
        except Exception:
            log.exception('change watcher failed; long polls fall back to their timeout')
        finally:
            # no await from the loop's test of self._events to here: a long poll that registers
            # meanwhile finds this task done and starts a new one
            started.set()
            if listener is not None:
                listener.close()
            if probe is not None:
                probe.close()

    async def _watch(self, probe: _CommitProbe, listener: _Listener | None) -> None:
        while self._events:
            listening = listener is not None and listener.listening
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.fallback_interval if listening else self.poll_interval)
            poked = self._poke.is_set()
            self._poke.clear()
            if not probe.changed() and not poked:
                continue
            self._last_seq, users = await sync_to_async(_users_changed_after, thread_sensitive=False)(self._last_seq)
            for user_id in users:
                for event in self._events.get(user_id, ()):
                    event.set()


watcher = ChangeWatcher(settings.OAIO_FEED_POLL_INTERVAL, settings.OAIO_FEED_FALLBACK_INTERVAL)


def notify_commit() -> None:
    """transaction.on_commit hook: wake this process's watcher at once."""
    watcher.poke_threadsafe()
