"""How ``oaio-server serve`` runs uvicorn: its log format, one process or ``--workers`` processes,
and a stop on SIGTERM/SIGINT that answers waiting long polls at once and exits with 0.

Imported by cli.serve once Django is set up in that process; uvicorn's worker processes start
afresh and import it before Django is set up, so nothing here imports the app's modules.
"""
import contextlib
import copy
import signal
import sys

import uvicorn
from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
from uvicorn.supervisors import multiprocess


def log_config(line_format: str) -> dict:
    """uvicorn's logging config with ``line_format`` (timestamped, as settings.LOGGING's) for its error
    and access logs. It names uvicorn's loggers only and disables no others, so the oaio loggers
    configured from settings.LOGGING keep working."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config['formatters']['default'].update(fmt=line_format, use_colors=False)
    config['formatters']['access'].update(
        fmt=line_format.replace('%(message)s', '%(client_addr)s - "%(request_line)s" %(status_code)s'),
        use_colors=False)
    return config


class Server(uvicorn.Server):
    """A uvicorn server whose SIGTERM/SIGINT answers waiting long polls at once and exits with 0.

    Plain uvicorn lets long polls wait out the graceful-shutdown timeout, then cancels them (their
    clients see a 503), and re-raises the signal after a clean shutdown, so that a requested stop
    ended with status -15 instead of 0.
    """

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        # not imported yet: the app is not loaded, so no long poll waits (and a signal handler must
        # not import: the interrupted code may hold the import lock)
        notify = sys.modules.get('oaio.server.notify')
        if notify is not None:
            notify.watcher.close_threadsafe()

    @contextlib.contextmanager
    def capture_signals(self):
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class _Worker(multiprocess.Process):
    """A worker process of ``--workers`` that runs :class:`Server` (uvicorn's would run its plain one)."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = Server(config=self.config)
        return self._server


def run(config: uvicorn.Config) -> int:
    """Serve until SIGTERM/SIGINT; return the exit status (uvicorn's 3 when the server failed to start).

    With ``config.workers`` > 1, uvicorn's supervisor binds the socket, starts that many worker
    processes (each imports the app afresh), replaces one that dies, and on SIGTERM/SIGINT stops
    them all with SIGTERM and waits for them.
    """
    if config.workers == 1:
        server = Server(config)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    multiprocess.Process = _Worker      # the supervisor builds (and rebuilds) its workers from this name
    supervisor = multiprocess.Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    failed = any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes)
    return STARTUP_FAILURE if failed else 0
