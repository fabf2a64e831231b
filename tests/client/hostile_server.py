"""A hostile oaio server for the client's tests: speaks just enough of the wire protocol for a sync
(login with CSRF cookie, current_stamp/, blobs/missing/, changes/, chunks/fetch/, files/…) and
answers with whatever the scenario file says — hostile ids, paths, manifests and file contents
included.

Usage: ``python hostile_server.py SCENARIO.json REQUEST_LOG.jsonl`` — binds a free loopback port and
prints it on the first line of stdout; tests build the scenario with :func:`entry` and
:func:`served` and start the server through :class:`Hostile`. The scenario is a JSON object:

- ``changes``: the entries of the change feed's snapshot (sent verbatim, any JSON);
- ``files``: ``{"<oaio_id>/<stamp>/<path>": spec}`` where spec has ``content`` (text, sent as
  UTF-8), optionally ``repeat`` (send the content that many times, without Content-Length) and
  ``fail_first`` (answer 503 to the first request). ``chunks/fetch/`` serves the same specs by the
  sha256 that the change feed's manifests declare for their paths (a file is one chunk here): a
  pack whose chunk header gives the size of what is sent (``repeat`` times the content);
- ``redirects``: ``{"<METHOD> <slug prefix>": [status, location]}`` — requests whose method and
  slug (the path after ``/api/``) start so are answered with that redirect, after their body is
  read (PUT is answered by redirects only, else 404);
- ``log_connections``: log every connection as ``{"connection": true}`` when it is accepted, before
  anything is read (a redirect target proves it got nothing at all);
- ``tls``: ``{"cert": PEM file, "key": PEM file}`` — speak https.

Every request is appended to the request log as one JSON line: method, decoded path, and for
files the bytes sent and whether the client closed the connection before the end.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    scenario: dict = {}
    log_path = ''
    served: set = set()
    lock = threading.Lock()

    def log_message(self, format, *args):        # keep stderr quiet
        pass

    def setup(self) -> None:
        super().setup()
        if self.scenario.get('log_connections'):
            with self.lock, open(self.log_path, 'a') as log:
                log.write(json.dumps({'connection': True}) + '\n')

    def _log(self, **entry) -> None:
        with self.lock, open(self.log_path, 'a') as log:
            log.write(json.dumps({'method': self.command, 'path': unquote(urlsplit(self.path).path), **entry}) + '\n')

    def _json(self, status: int, body: object, cookies: tuple[str, ...] = ()) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(payload)))
        for cookie in cookies:
            self.send_header('Set-Cookie', cookie)
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if self.headers.get('Transfer-Encoding', '').lower() != 'chunked':
            return self.rfile.read(int(self.headers.get('Content-Length') or 0))
        body = b''
        while size := int(self.rfile.readline().split(b';')[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()                   # the CRLF after each chunk
        self.rfile.readline()                       # the empty line after the last (no trailers)
        return body

    def _redirected(self, slug: str) -> bool:
        """Answer with the scenario's redirect for this request, if it names one."""
        for request, (status, location) in self.scenario.get('redirects', {}).items():
            if f'{self.command} {slug}'.startswith(request):
                self._log(status=status)
                self.send_response(status)
                self.send_header('Location', location)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return True
        return False

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        slug = url.path.removeprefix('/api/')
        if self._redirected(slug):
            return None
        if slug == 'login/':
            self._log()
            return self._json(200, {'detail': 'token'}, ('csrftoken=hostiletoken; Path=/',))
        if slug == 'current_stamp/':
            self._log()
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%d%H%M%S%f')
            return self._json(200, {'current_stamp': stamp})
        if slug == 'changes/':
            self._log()
            since = parse_qs(url.query).get('since', [''])[-1]
            if since:
                return self._json(200, {'cursor': since, 'snapshot': False, 'more': False, 'changes': []})
            return self._json(200, {'cursor': '1', 'snapshot': True, 'more': False,
                                    'changes': self.scenario.get('changes', [])})
        if slug.startswith('files/'):
            return self._file(slug.removeprefix('files/'))
        self._log()
        return self._json(404, {'error': 'not_found', 'detail': slug})

    def _file(self, address: str) -> None:
        parts = address.split('/', 2)
        key = '/'.join(unquote(part) for part in parts)
        spec = self.scenario.get('files', {}).get(key)
        if spec is None:
            self._log(status=404)
            return self._json(404, {'error': 'not_found', 'detail': key})
        with self.lock:
            first = key not in self.served
            self.served.add(key)
        if spec.get('fail_first') and first:
            self._log(status=503)
            return self._json(503, {'error': 'unavailable', 'detail': 'try again later'})
        content = spec['content'].encode()
        repeat = spec.get('repeat', 1)
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        if repeat == 1:
            self.send_header('Content-Length', str(len(content)))
        else:                                       # a body that ends when the connection closes
            self.send_header('Connection', 'close')
            self.close_connection = True
        self.end_headers()
        sent, aborted = self._stream([(b'', content, repeat)])
        self._log(status=200, sent=sent, aborted=aborted)

    def _stream(self, pieces: list[tuple[bytes, bytes, int]]) -> tuple[int, bool]:
        """Write each (header, content, repeat) as the header and the content ``repeat`` times;
        return the content bytes sent and whether the client went away first."""
        sent = 0
        try:
            for header, content, repeat in pieces:
                self.wfile.write(header)
                for _ in range(repeat):
                    self.wfile.write(content)
                    sent += len(content)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return sent, True
        return sent, False

    def do_POST(self) -> None:
        slug = urlsplit(self.path).path.removeprefix('/api/')
        body = self._read_body()
        if self._redirected(slug):
            return None
        self._log()
        if slug == 'login/':
            return self._json(200, {'username': 'alice'}, ('sessionid=hostilesession; Path=/',))
        if slug == 'logout/':
            return self._json(200, {'detail': 'logged out'})
        if slug == 'blobs/missing/':
            return self._json(200, {'missing': json.loads(body or b'{}').get('sha256', [])})
        if slug == 'chunks/fetch/':
            return self._pack(json.loads(body or b'{}').get('sha256', []))
        return self._json(404, {'error': 'not_found', 'detail': slug})

    def _specs_by_hash(self) -> dict:
        """sha256 → file spec, as the change feed's manifests declare them."""
        specs = {}
        for change in self.scenario.get('changes', []):
            obj = change.get('oaio') if isinstance(change, dict) else None
            manifest = change.get('files') if isinstance(change, dict) else None
            if not isinstance(obj, dict) or not isinstance(manifest, dict):
                continue
            for path, declared in manifest.items():
                spec = self.scenario.get('files', {}).get(f"{obj.get('oaio_id')}/{obj.get('client_stamp')}/{path}")
                if spec is not None and isinstance(declared, dict):
                    specs.setdefault(declared.get('sha256'), spec)
        return specs

    def _pack(self, hashes: list) -> None:
        """A chunks/fetch/ answer: the chunks asked for, each framed with the size actually sent."""
        specs = self._specs_by_hash()
        if any(digest not in specs for digest in hashes):
            self._log(status=404, hashes=hashes)
            return self._json(404, {'error': 'not_found', 'detail': 'no such chunk'})
        with self.lock:
            first = [digest for digest in hashes if digest not in self.served]
            self.served.update(hashes)
        if any(specs[digest].get('fail_first') for digest in first):
            self._log(status=503, hashes=hashes)
            return self._json(503, {'error': 'unavailable', 'detail': 'try again later'})
        self.send_response(200)
        self.send_header('Content-Type', 'application/x-oaio-pack')
        self.send_header('Connection', 'close')         # the body ends when the connection closes
        self.close_connection = True
        self.end_headers()
        pieces = []
        for digest in hashes:
            content, repeat = specs[digest]['content'].encode(), specs[digest].get('repeat', 1)
            pieces.append((f'{digest} {len(content) * repeat}\n'.encode(), content, repeat))
        sent, aborted = self._stream(pieces)
        self._log(status=200, hashes=hashes, sent=sent, aborted=aborted)

    def do_PUT(self) -> None:
        slug = urlsplit(self.path).path.removeprefix('/api/')
        self._read_body()
        if self._redirected(slug):
            return None
        self._log()
        return self._json(404, {'error': 'not_found', 'detail': slug})


# building scenarios ---------------------------------------------------------------------------

STAMP = '20261125101010123456'


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry(oaio_id: object, values: object = None, files: dict | None = None, **fields) -> dict:
    """A change-feed entry; ``files`` maps path → served text (the manifest is built from it)."""
    values = {} if values is None else values
    obj = {'oaio_id': oaio_id, 'client_stamp': STAMP, 'server_stamp': STAMP, 'client_values': values,
           'server_values': values, 'csh_id': 'oaio', 'username': 'alice', 'device_id': 'evil', 'app_id': 'evil',
           'csh_access_right': 'C', **fields}
    manifest = {path: {'sha256': sha(text), 'size': len(text.encode())} for path, text in (files or {}).items()}
    return {'oaio': obj, 'files': manifest}


def served(oaio_id: str, files: dict) -> dict:
    return {f'{oaio_id}/{STAMP}/{path}': {'content': text} for path, text in files.items()}


# running it ---------------------------------------------------------------------------------

class Hostile:
    """The hostile server process with its scenario and request log, in the folder ``name`` of
    ``tmp_path``; ``host`` is its ``127.0.0.1:PORT``."""

    def __init__(self, tmp_path: Path, scenario: dict, name: str = 'hostile'):
        self.dir = tmp_path / name
        self.dir.mkdir()
        (self.dir / 'scenario.json').write_text(json.dumps(scenario))
        self.log_path = self.dir / 'requests.jsonl'
        self.process = subprocess.Popen([sys.executable, __file__, str(self.dir / 'scenario.json'),
                                         str(self.log_path)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line.strip().isdigit(), line + self.process.stderr.read()
        self.host = f'127.0.0.1:{line.strip()}'

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines()] if self.log_path.exists() else []

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


def main() -> None:
    scenario_path, log_path = sys.argv[1], sys.argv[2]
    with open(scenario_path) as file:
        Handler.scenario = json.load(file)
    Handler.log_path = log_path
    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    if 'tls' in Handler.scenario:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(Handler.scenario['tls']['cert'], Handler.scenario['tls']['key'])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
