"""The HTTP session with an oaio server: login, CSRF, timeouts, retries, errors as exceptions."""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import IO, Iterator
from urllib.parse import quote, urljoin, urlsplit

import requests

from . import protocol as p
from .errors import (AccessDenied, AuthenticationError, ConflictError, OaioError, OfflineError, RedirectRefused,
                     ServerError)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
RETRIES = 3
CHUNK_BYTES = p.CHUNK_BYTES


def base_url(host: str) -> str:
    """``host[:port]`` → the API URL: plain http only when the host is this machine — exactly
    ``localhost``, an address in 127.0.0.0/8 or ``::1`` (``[::1]:port`` with a port) —, https for
    every other name (``localhost.example.org`` and ``127.0.0.1.nip.io`` included). A full
    ``http(s)://…`` URL is taken as it is."""
    if host.startswith(('http://', 'https://')):
        return host.rstrip('/') + ('' if host.rstrip('/').endswith('/api') else '/api') + '/'
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name, netloc = urlsplit(f'//{host}').hostname, host
    else:                                           # a bare address: an IPv6 one needs brackets in a URL
        name, netloc = host, f'[{host}]' if address.version == 6 else host
    scheme = 'http' if _is_loopback(name) else 'https'
    return f'{scheme}://{netloc}/api/'


def _is_loopback(name: str | None) -> bool:
    if name == 'localhost':
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _error_for(response: requests.Response, what: str) -> OaioError:
    try:
        body = response.json()
    except ValueError:
        body = {'detail': response.text[:200]}
    detail = body.get('detail', '') if isinstance(body, dict) else ''
    message = f'{what} failed: HTTP {response.status_code} {detail}'.strip()
    if response.status_code == 401:
        return AuthenticationError(message)
    if response.status_code in (502, 503, 504):       # a proxy without backend, or a server going down
        return OfflineError(f'server {response.url.split("/api/")[0]} unreachable: {message}')
    kind = {409: ConflictError, 403: AccessDenied, 404: AccessDenied}.get(response.status_code, ServerError)
    return kind(message, response.status_code, body)


def _refuse_redirect(response: requests.Response, api_url: str) -> requests.Response:
    """The response, unless it is a redirect (any 3xx): then :class:`RedirectRefused`."""
    if not 300 <= response.status_code < 400:
        return response
    response.close()
    location = response.headers.get('Location')
    target = f'redirect to {urljoin(response.url, location)[:200]!r}' if location else 'without a Location'
    slug = response.url.removeprefix(api_url)
    raise RedirectRefused(f'the server at {api_url} answered {response.request.method} {slug[:200]!r} with '
                          f'{response.status_code} {target}; oaio follows no redirects (if that is the '
                          "server's real address, use it as SERVER)")


class ServerApi:
    """One logged-in session with an oaio server. Every request has a timeout; connection failures
    are retried with back-off, then raised as :class:`OfflineError`. Requests may be sent from
    several threads at once (parallel downloads): one of them logs in again when the session ended.

    No redirect is followed, not even to the same host: ``requests`` would send a 307/308 on with
    its body (the password of a login, the content of an upload), the X-OAIO headers and (cookies
    ignore ports) the session cookie, and it follows https → http alike. A sync client talks to one
    API at one address; a redirect means that address is wrong or the traffic is being diverted,
    so it becomes :class:`RedirectRefused`, naming where it pointed."""

    def __init__(self, host: str, username: str, password: str, device_id: str, app_id: str):
        self.url = base_url(host)
        self.username, self._password = username, password
        self.session = requests.Session()
        self.session.headers.update({p.HEADER_USER: p.encode_context(username),
                                     p.HEADER_DEVICE: p.encode_context(device_id),
                                     p.HEADER_APP: p.encode_context(app_id)})
        self.logged_in = False
        self._logins = 0                    # how many logins this session made
        self._login_lock = threading.Lock()

    def close(self) -> None:
        """Log out (if logged in and reachable) and close the session."""
        if self.logged_in:
            try:
                self._send('post', 'logout/', retries=0)
            except (OfflineError, ServerError, RedirectRefused):
                pass
            self.logged_in = False
        self.session.close()

    def _send(self, method: str, slug: str, retries: int = RETRIES, timeout: float = READ_TIMEOUT,
              **kwargs) -> requests.Response:
        url = self.url + slug
        for attempt in range(retries + 1):
            try:
                if method != 'get':     # the token GET can fail to connect too: inside the try
                    kwargs['headers'] = {**kwargs.get('headers', {}), 'X-CSRFToken': self._csrf_token(url),
                                         'Referer': url}
                response = self.session.request(method, url, timeout=(CONNECT_TIMEOUT, timeout),
                                                allow_redirects=False, **kwargs)
                return _refuse_redirect(response, self.url)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == retries or not _rewindable(kwargs):
                    raise OfflineError(f'server {self.url} unreachable: {exc.__class__.__name__}') from None
                time.sleep(min(0.2 * 2 ** attempt, 2.0))
        raise AssertionError('unreachable')

    def _csrf_token(self, url: str) -> str:
        token = self.session.cookies.get('csrftoken')
        if not token:
            _refuse_redirect(self.session.get(url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=False),
                             self.url)
            token = self.session.cookies.get('csrftoken', '')
        return token

    def request(self, method: str, slug: str, what: str, **kwargs) -> requests.Response:
        """Send a request (logging in first if needed, and once more if the session expired)."""
        logins = self._ensure_login()
        response = self._send(method, slug, **kwargs)
        if response.status_code in (401, 403) and _is_session_error(response):
            self._ensure_login(expired=logins)
            response = self._send(method, slug, **kwargs)
        if not response.ok:
            raise _error_for(response, what)
        return response

    def _ensure_login(self, expired: int | None = None) -> int:
        """Log in unless logged in; with ``expired``, again unless another thread did since login
        number ``expired``. Returns the number of the login in use."""
        with self._login_lock:
            if not self.logged_in or self._logins == expired:
                self.logged_in = False
                self.login()
            return self._logins

    def login(self) -> None:
        """Log in with the credentials; :class:`AuthenticationError` if the server refuses them."""
        response = self._send('post', 'login/', json={'username': self.username, 'password': self._password})
        if not response.ok:
            raise _error_for(response, f'login of user {self.username!r}')
        self.logged_in = True
        self._logins += 1

    def json(self, method: str, slug: str, what: str, **kwargs):
        return self.request(method, slug, what, **kwargs).json()

    def current_stamp(self) -> str:
        return self.json('get', 'current_stamp/', 'clock check')['current_stamp']

    def changes(self, cursor: str, wait: float = 0.0) -> dict:
        """One answer of the change feed after ``cursor`` ('' for a snapshot), files as deltas."""
        params = {'since': cursor, 'files': 'delta'} if cursor else {'files': 'delta'}
        if wait:
            params['wait'] = f'{wait:g}'
        return self.json('get', 'changes/', 'change feed', params=params, timeout=READ_TIMEOUT + wait)

    def manifest(self, oaio_id: str, stamp: str) -> dict:
        """Every file of a version: ``{"files": {path: entry}, "file_paths": bool}``."""
        return self.json('get', f'manifest/{quote(oaio_id, safe="")}/{stamp}', f'file list of {oaio_id!r}')

    def missing_blobs(self, hashes: list[str]) -> set[str]:
        missing: set[str] = set()
        for start in range(0, len(hashes), p.MAX_MISSING_HASHES):
            batch = hashes[start:start + p.MAX_MISSING_HASHES]
            answer = self.json('post', 'blobs/missing/', 'blob check', json={'sha256': batch})
            missing.update(answer['missing'])
        return missing

    def put_file(self, oaio_id: str, stamp: str, path: str, content: IO[bytes], sha256: str) -> None:
        """Stream one file to the server's storage host (verified there against ``sha256``)."""
        self.request('put', _file_slug(oaio_id, stamp, path), f'upload of {path!r}', data=_chunks(content),
                     headers={p.HEADER_SHA256: sha256}, retries=0)

    def put_pack(self, body: Iterator[bytes], what: str) -> dict:
        """Send one pack of chunks (``<sha256> <size>\\n`` and the bytes of each, streamed from
        ``body``); the server verifies every chunk before it keeps any."""
        return self.request('post', 'chunks/', what, data=body, retries=0,
                            headers={'Content-Type': 'application/x-oaio-pack'}).json()

    def fetch_chunks(self, hashes: list[str]) -> requests.Response:
        """A streaming response with a pack of the chunks ``hashes``, in that order (caller closes it)."""
        return self.request('post', 'chunks/fetch/', f'download of {len(hashes)} chunks', json={'sha256': hashes},
                            stream=True)

    def open_file(self, oaio_id: str, stamp: str, path: str) -> requests.Response:
        """A streaming response with one file of a version (caller closes it)."""
        return self.request('get', _file_slug(oaio_id, stamp, path), f'download of {path!r}', stream=True)


def _file_slug(oaio_id: str, stamp: str, path: str) -> str:
    return f'files/{quote(oaio_id, safe="")}/{stamp}/{quote(path, safe="/")}'


def _chunks(content: IO[bytes]) -> Iterator[bytes]:
    while chunk := content.read(CHUNK_BYTES):
        yield chunk


def _rewindable(kwargs: dict) -> bool:
    """A request whose body is a stream cannot be sent again after a failure."""
    return not hasattr(kwargs.get('data'), '__next__')


def _is_session_error(response: requests.Response) -> bool:
    try:
        return response.json().get('error') in ('not_authenticated', 'csrf')
    except ValueError:
        return False
