"""errno mapping, in one place: every handler is wrapped by :func:`handler`."""
from __future__ import annotations

import errno
import functools
import logging
from typing import NoReturn

import pyfuse3

from oaio.client import AccessDenied, ProtocolError

log = logging.getLogger(__name__)


def refuse(code: int, why: str = '') -> NoReturn:
    """Fail the current request with ``code`` (logging ``why`` if given)."""
    if why:
        log.info('%s', why)
    raise pyfuse3.FUSEError(code)


def errno_of(exc: BaseException) -> int | None:
    """The errno a known exception maps to, or None for an unexpected one."""
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, AccessDenied):
        return errno.EACCES
    if isinstance(exc, ProtocolError):
        return errno.EINVAL
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
