"""errno mapping, in one place: every handler is wrapped by :func:`handler`."""
from __future__ import annotations

import errno
import functools
import logging
from typing import NoReturn

import pyfuse3
import trio

from oaio.client import AccessDenied, NotFound, OaioError, ProtocolError

log = logging.getLogger(__name__)


def refuse(code: int, why: str = '') -> NoReturn:
    """Fail the current request with ``code`` (logging ``why`` if given)."""
    if why:
        log.info('%s', why)
    raise pyfuse3.FUSEError(code)


# exception types → errno, the one table (first match wins: subclasses before their bases). The
# client's domain errors travel as types from the client core to here, never as message texts.
ERRNO_OF_TYPE: tuple[tuple[type[BaseException], int], ...] = (
    (NotFound, errno.ENOENT),               # no such object or user (or not shared with you)
    (AccessDenied, errno.EACCES),           # the server refused: the right is too low
    (ProtocolError, errno.EINVAL),          # invalid name, values or argument
    (trio.TooSlowError, errno.ETIMEDOUT),   # the server did not answer in time
    (OaioError, errno.EIO),                 # offline, a server error, invalid data from the server
)


def errno_of(exc: BaseException) -> int | None:
    """The errno a known exception maps to, or None for an unexpected one."""
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    for kind, code in ERRNO_OF_TYPE:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return None


def handler(method):
    """Turn known exceptions into their errno and anything unexpected into a logged EIO, so the
    mount stays up whatever a handler runs into."""
    @functools.wraps(method)
    async def wrapper(*args, **kwargs):
        try:
            return await method(*args, **kwargs)
        except pyfuse3.FUSEError:     # an errno already (refuse): the common failure, passed on as it is
            raise
        except Exception as exc:      # the kernel gets an errno for everything
            code = errno_of(exc)
            if code is None:
                log.exception('unexpected error in %s; answering EIO', method.__name__)
                code = errno.EIO
            raise pyfuse3.FUSEError(code) from None
    return wrapper
