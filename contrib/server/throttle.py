"""Login throttling for every way in through ``django.contrib.auth.authenticate()``: the API's
``login/`` and the admin's login form alike.

Each failed login counts twice:

- for the pair of user name (case-insensitive) and client address: after ``OAIO_LOGIN_FAILURES``
  failures the pair waits ``OAIO_LOGIN_LOCKOUT`` seconds from its last failure, and each further
  failure doubles the wait, up to ``OAIO_LOGIN_WINDOW``. The count is forgotten when the user logs
  in from that address, or once the pair has stayed quiet for ``OAIO_LOGIN_WINDOW`` after its wait
  ended. The pair, not the user name: a stranger guessing alice's password locks out himself, not
  alice logging in from her own address;
- for the client address: after ``OAIO_LOGIN_ADDRESS_FAILURES`` failures within the last
  ``OAIO_LOGIN_WINDOW`` seconds (many user names guessed from one address) it waits until the
  oldest of them leaves that window. A successful login does not clear it.

While either waits, every login is refused before the password is checked, the right one too,
and each failure and each refusal is logged as a WARNING of this module's logger.

The address is ``REMOTE_ADDR``: the socket's peer, or the X-Forwarded-For client when that peer is
one of ``OAIO_TRUSTED_PROXIES`` (uvicorn decides, see cli.serve). The counts live in Django's
cache, the local memory of each server process: a restart forgets them, several processes count
apart.

How it is hooked, so that no login path can go around it: ``ThrottleBackend`` comes first in
``AUTHENTICATION_BACKENDS`` and raises PermissionDenied while throttled, which makes
``authenticate()`` stop before any password is checked and send ``user_login_failed``; the
receivers of ``user_login_failed`` and ``user_logged_in`` below count and clear. (They are
connected when this module is imported: by views.py, and by Django loading the backend, which
``authenticate()`` does before it can send either signal.)

Why not django-axes, which hooks in the same way: its lockout compares the largest count of all
its lockout parameters with one failure limit, so a pair limit of 5 and an address limit of 50
cannot both hold; its cache handler forgets a count when the cool-off ends, so the wait cannot
double; it warns that the local-memory cache we use is unsupported (axes.W001); and its lockout
answer is a page of its own, not our JSON 429. What we need fits in this module.
"""
import hashlib
import logging
import math
import time

from django.conf import settings
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver

from .errors import TooManyRequests

log = logging.getLogger(__name__)

# set on the request by ThrottleBackend: seconds it must wait (0: not throttled)
_WAIT = 'oaio_login_wait'


def _address(request) -> str:
    return request.META.get('REMOTE_ADDR') or '-'


def _pair_key(request, username: str) -> str:
    name = hashlib.sha256(username.lower().encode()).hexdigest()
    return f'oaio-login-pair:{name}:{_address(request)}'


def _address_key(request) -> str:
    return f'oaio-login-addr:{_address(request)}'


def _pair_wait(failures: int) -> float:
    """Seconds a pair with this many failures waits after the last: none below the limit, then
    ``OAIO_LOGIN_LOCKOUT`` doubling with each further failure, up to ``OAIO_LOGIN_WINDOW``."""
    beyond = failures - settings.OAIO_LOGIN_FAILURES
    if beyond < 0:
        return 0.0
    return min(settings.OAIO_LOGIN_WINDOW, settings.OAIO_LOGIN_LOCKOUT * 2 ** min(beyond, 32))


def _recent_address_failures(request, now: float) -> list[float]:
    return [when for when in cache.get(_address_key(request), []) if when > now - settings.OAIO_LOGIN_WINDOW]


def _seconds_to_wait(request, username: str, now: float) -> float:
    """How long this user name must wait before it may try again from this address (0: now)."""
    failures, last_failure = cache.get(_pair_key(request, username), (0, 0.0))
    pair = last_failure + _pair_wait(failures) - now
    recent, limit = _recent_address_failures(request, now), settings.OAIO_LOGIN_ADDRESS_FAILURES
    address = recent[-limit] + settings.OAIO_LOGIN_WINDOW - now if len(recent) >= limit else 0.0
    return max(pair, address, 0.0)


def _count_failure(request, username: str, now: float) -> None:
    key = _pair_key(request, username)
    failures = cache.get(key, (0, 0.0))[0] + 1
    cache.set(key, (failures, now), timeout=math.ceil(_pair_wait(failures) + settings.OAIO_LOGIN_WINDOW))
    recent = _recent_address_failures(request, now)[-settings.OAIO_LOGIN_ADDRESS_FAILURES:] + [now]
    cache.set(_address_key(request), recent, timeout=math.ceil(settings.OAIO_LOGIN_WINDOW))


class ThrottleBackend(BaseBackend):
    """The first authentication backend: refuses (PermissionDenied) while the user name from this
    address, or this address, is throttled; otherwise leaves the password to the next backend."""

    def authenticate(self, request, username=None, **credentials):
        if request is not None and isinstance(username, str):
            wait = _seconds_to_wait(request, username, time.time())
            setattr(request, _WAIT, math.ceil(wait))
            if wait > 0:
                raise PermissionDenied('too many failed logins')


def raise_if_throttled(request) -> None:
    """TooManyRequests (429 with Retry-After) if ThrottleBackend refused this request's login;
    for a view whose ``authenticate()`` returned None."""
    wait = getattr(request, _WAIT, 0)
    if wait:
        raise TooManyRequests(f'too many failed logins; try again in {wait} s', retry_after=wait)


@receiver(user_login_failed)
def _log_and_count_failure(sender, credentials: dict, request=None, **kwargs) -> None:
    username = credentials.get('username')
    if request is None or not isinstance(username, str):
        return
    wait = getattr(request, _WAIT, 0)
    if wait:
        log.warning('login refused (throttled for %d s) for user %r from %s', wait, username, _address(request))
        return
    _count_failure(request, username, time.time())
    log.warning('login failed for user %r from %s', username, _address(request))


@receiver(user_logged_in)
def _clear_pair_count(sender, request, user, **kwargs) -> None:
    if request is not None:
        cache.delete(_pair_key(request, user.get_username()))
