"""Why an ``oaio`` command failed: its exit codes (README "The drive" lists them) and the one-line
reasons it gives. Scripts and systemd tell a server that is down (retry later) from a wrong
password (do not retry) by the code alone, as with rclone's."""
from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

OK = 0
USAGE = 1           # bad arguments or input: password file, mountpoint (missing, busy, not empty), packages
NOT_FOUND = 2       # the path is no oaio drive, or not inside one
UNREACHABLE = 3     # no connection to the server: refused, unknown host name, TLS, timeout
AUTHENTICATION = 4  # the server refused the user name or password
REFUSED = 5         # the server refused the request (a right missing) or is no oaio server
MOUNT_FAILED = 6    # the mount itself failed: the cache is in use, FUSE refused


class CliError(Exception):
    """A one-line error for the user; the command exits with ``code``."""

    def __init__(self, message: str, code: int = USAGE):
        super().__init__(message)
        self.code = code


def one_line(text: str, limit: int = 200) -> str:
    """``text`` as one line of at most ``limit`` characters (an HTML error page has many)."""
    line = ' '.join(text.split())
    return line if len(line) <= limit else line[:limit - 1] + '…'


def unreachable_reason(api_url: str, timeout: float = 10.0) -> str:
    """Why the server at ``api_url`` cannot be reached, in a few words: its host name is unknown,
    the connection is refused or times out, or its TLS certificate is not accepted. One probe of
    each step, as the HTTP client's error names only its class ("ConnectionError"); '' if all pass."""
    parts = urlsplit(api_url)
    host, port = parts.hostname or '', parts.port or (443 if parts.scheme == 'https' else 80)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return f'unknown host name {host}'
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            if parts.scheme == 'https':
                ssl.create_default_context().wrap_socket(connection, server_hostname=host).close()
    except ssl.SSLCertVerificationError as exc:
        return f'TLS certificate of {host} not accepted: {exc.verify_message}'
    except ssl.SSLError as exc:
        return f'TLS with {host}:{port} failed: {exc.reason or exc}'
    except TimeoutError:
        return f'no answer from {host}:{port} within {timeout:g} s'
    except OSError as exc:
        return f'{(exc.strerror or str(exc)).lower()} at {host}:{port}'
    return ''
