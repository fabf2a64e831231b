"""HTTP endpoints of WIRE.md plus our file and blob extensions: decode, call one function, answer.

Every endpoint that takes POST also answers GET with 200 and the ``csrftoken`` cookie: the
original client sends such a GET to the same URL before its first POST to obtain the token.
"""
import functools
import json
import logging

from django.conf import settings
from django.contrib.auth import authenticate, login as django_login, logout as django_logout
from django.http import HttpResponseBase, JsonResponse
from django.middleware.csrf import get_token

from oaio import protocol as p

from . import objects, throttle
from .errors import InvalidInput, MethodNotAllowed, NotAuthenticated, NotFound
from .models import ActionLog

log = logging.getLogger('oaio.server')


def _json_body(request) -> dict:
    try:
        body = json.loads(request.body or b'null')
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput(f'request body is not valid JSON: {exc}') from None
    if not isinstance(body, dict):
        raise InvalidInput('request body must be a JSON object')
    return body


def context_of(request) -> objects.Context:
    """The caller's context; ProtocolError (400) for a malformed X-OAIO header."""
    p.decode_context(request.headers.get(p.HEADER_USER), p.HEADER_USER)     # the session names the user
    return objects.Context(
        user=request.user,
        device_id=p.decode_context(request.headers.get(p.HEADER_DEVICE), p.HEADER_DEVICE),
        app_id=p.decode_context(request.headers.get(p.HEADER_APP), p.HEADER_APP))


def endpoint(methods: tuple[str, ...], anonymous: bool = False):
    """Wrap a view: allowed methods, the token GET, authentication and the caller's context.

    The view is called as ``view(request, ctx, *args)`` and its return value is answered as JSON
    (a non-response value) or as it is (an HttpResponse).
    """
    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method == 'GET' and 'GET' not in methods:
                get_token(request)
                return JsonResponse({'detail': f'send {"/".join(methods)} here; this GET sets the CSRF cookie'})
            if request.method not in methods:
                raise MethodNotAllowed(f'{request.path} answers {", ".join(methods)}')
            if not anonymous and not request.user.is_authenticated:
                raise NotAuthenticated('log in first (POST login/)')
            result = view(request, context_of(request), *args, **kwargs)
            return result if isinstance(result, HttpResponseBase) else JsonResponse(result, safe=False)
        return wrapper
    return decorate


@endpoint(('POST',), anonymous=True)
def login(request, ctx):
    body = _json_body(request)
    username, password = body.get('username'), body.get('password')
    if not isinstance(username, str) or not isinstance(password, str):
        raise InvalidInput('login needs "username" and "password" strings')
    p.check_storable_text(username, 'username')
    user = authenticate(request, username=username, password=password)     # throttled: see throttle.py
    if user is None:
        throttle.raise_if_throttled(request)
        raise NotAuthenticated('wrong user name or password')
    django_login(request, user)
    ActionLog.objects.create(user=user, device_id=ctx.device_id, app_id=ctx.app_id, action='login')
    return {'username': user.username}


@endpoint(('POST',), anonymous=True)
def logout(request, ctx):
    django_logout(request)
    return {'detail': 'logged out'}


@endpoint(('GET',), anonymous=True)
def current_stamp(request, ctx):
    # The original client checks its session with this GET and logs in again only when it fails:
    # a session cookie that no longer authenticates (expired, logged out elsewhere) gets a 401.
    if settings.SESSION_COOKIE_NAME in request.COOKIES and not request.user.is_authenticated:
        raise NotAuthenticated('your session has ended; log in again (POST login/)')
    return {'current_stamp': p.now_stamp()}


@endpoint(('GET',))
def oaio_stampz(request, ctx):
    return objects.listing(request.user)


@endpoint(('POST',))
def register(request, ctx):
    return objects.register(ctx, _json_body(request))


@endpoint(('POST',))
def upload(request, ctx):
    return objects.upload(ctx, _json_body(request))


@endpoint(('POST',))
def delete(request, ctx):
    objects.delete(ctx, _json_body(request))
    return {'detail': 'deleted'}


@endpoint(('POST',))
def subscribe(request, ctx):
    return {'Pid': objects.subscribe(ctx, _json_body(request))}


@endpoint(('GET',))
def user_subz(request, ctx, oaio_id):
    return objects.user_subscriptions(request.user, oaio_id)


@endpoint(('GET',))
def manifest(request, ctx, oaio_id, stamp):
    oaio_id, stamp, _ = file_address(oaio_id, stamp, 'x')
    return objects.version_manifest(request.user, oaio_id, stamp)


@endpoint(('POST',))
def wipe_user(request, ctx):
    objects.wipe_user(ctx, _json_body(request).get('Uid'))
    return {'detail': 'wiped'}


@endpoint(('GET',))
def csh_args(request, ctx, csh_id):
    if csh_id == settings.OAIO_DEFAULT_STORAGE_HOST:
        return {'base_url': request.build_absolute_uri('/api/files/')}
    if csh_id in settings.OAIO_STORAGE_HOSTS:
        return settings.OAIO_STORAGE_HOSTS[csh_id]
    raise NotFound(f'no storage host {csh_id!r} is configured on this server')


@endpoint(('POST',))
def blobs_missing(request, ctx):
    hashes = _json_body(request).get('sha256')
    if not isinstance(hashes, list) or len(hashes) > p.MAX_MISSING_HASHES:
        raise InvalidInput(f'"sha256" must be a list of at most {p.MAX_MISSING_HASHES} hashes')
    return {'missing': objects.missing_blobs(request.user, [p.check_sha256(digest) for digest in hashes])}


def file_address(oaio_id: str, stamp: str, path: str) -> tuple[str, str, str]:
    """The checked parts of a ``files/<oaio_id>/<stamp>/<path>`` URL."""
    return p.check_oaio_id(oaio_id), p.check_stamp(stamp), p.check_relative_path(path.rstrip('/'))


@endpoint(('DELETE',))
def files(request, ctx, oaio_id, stamp, path):
    """The storage host: ``files/<oaio_id>/<stamp>/<path>``. GET and PUT never reach Django: they
    are served in front of it (downloads.py, uploads.py), so that a body is read only after the
    caller is known. DELETE removes the caller's staged files there (a prefix: all below it)."""
    p.check_oaio_id(oaio_id)
    p.check_stamp(stamp)
    prefix = path.rstrip('/')
    if prefix:
        p.check_relative_path(prefix)
    return JsonResponse({'deleted': objects.delete_staged(request.user, oaio_id, stamp, prefix)})
