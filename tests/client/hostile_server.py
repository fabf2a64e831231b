"""A hostile oaio server for the client's tests: speaks just enough of the wire protocol for a sync
(login with CSRF cookie, current_stamp/, blobs/missing/, changes/, files/…) and answers with
whatever the scenario file says — hostile ids, paths, manifests and file contents included.

Usage: ``python hostile_server.py SCENARIO.json REQUEST_LOG.jsonl`` — binds a free loopback port and
prints it on the first line of stdout. The scenario is a JSON object:

- ``changes``: the entries of the change feed's snapshot (sent verbatim, any JSON);
- ``files``: ``{"<oaio_id>/<stamp>/<path>": spec}`` where spec has ``content`` (text, sent as
  UTF-8), optionally ``repeat`` (send the content that many times, without Content-Length) and
  ``fail_first`` (answer 503 to the first request).

Every request is appended to the request log as one JSON line: method, decoded path, and for
files the bytes sent and whether the client closed the connection before the end.
"""
from __future__ import annotations

import datetime
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    scenario: dict = {}
    log_path = ''
    served: set = set()
    lock = threading.Lock()

    def log_message(self, format, *args):        # keep stderr quiet
        pass

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
        return self.rfile.read(int(self.headers.get('Content-Length') or 0))

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        slug = url.path.removeprefix('/api/')
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
        sent, aborted = 0, False
        try:
            for _ in range(repeat):
                self.wfile.write(content)
                sent += len(content)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            aborted = True
            self.close_connection = True
        self._log(status=200, sent=sent, aborted=aborted)

    def do_POST(self) -> None:
        slug = urlsplit(self.path).path.removeprefix('/api/')
        body = self._read_body()
        self._log()
        if slug == 'login/':
            return self._json(200, {'username': 'alice'}, ('sessionid=hostilesession; Path=/',))
        if slug == 'logout/':
            return self._json(200, {'detail': 'logged out'})
        if slug == 'blobs/missing/':
            return self._json(200, {'missing': json.loads(body or b'{}').get('sha256', [])})
        return self._json(404, {'error': 'not_found', 'detail': slug})


def main() -> None:
    scenario_path, log_path = sys.argv[1], sys.argv[2]
    with open(scenario_path) as file:
        Handler.scenario = json.load(file)
    Handler.log_path = log_path
    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == '__main__':
    main()
