"""``GET /metrics``: this server process's counters in Prometheus's text format (prometheus-client),
as a plain ASGI app in front of Django.

Every request passes asgi.application, which counts it here (:func:`measured`) by method, route
kind (few values, see asgi._route) and status, with its duration. Long polls waiting and uploads in
progress are read from notify.watcher and uploads when scraped; stored bytes and versions are
queried from the database then (a sum and a count: fine at today's sizes).

The counts tell a stranger how busy the server is and how much it holds: only the addresses (or
networks) of ``OAIO_METRICS_ALLOW`` may read them, loopback by default; others get 403.
"""
import contextlib
import ipaddress
import logging
import time

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Sum
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from . import front, uploads
from .errors import Forbidden, MethodNotAllowed
from .models import Blob, Version
from .notify import watcher

PATH = '/metrics'
_METHODS = {'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'}     # any other is 'other'
log = logging.getLogger(__name__)

REQUESTS = Counter('oaio_http_requests', 'HTTP requests by method, route kind and status '
                   '("none": the client left before an answer began)', ['method', 'route', 'status'])
DURATION = Histogram('oaio_http_request_duration_seconds', 'Time from a request to the end of its answer '
                     '(long polls wait up to 60 s)', ['method', 'route'],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
LONG_POLLS = Gauge('oaio_long_polls_waiting', 'Long polls of this process waiting for a change')
UPLOADS = Gauge('oaio_uploads_in_progress', 'File uploads of this process reading their body')


class _StoredCollector:
    """Gauges queried from the database at each scrape: what the server holds."""

    def describe(self):
        # names only: the registry asks at registration, which must not query the database
        return [GaugeMetricFamily('oaio_stored_bytes', ''), GaugeMetricFamily('oaio_blobs', ''),
                GaugeMetricFamily('oaio_versions', '')]

    def collect(self):
        front.keep_connection()
        try:
            blobs = Blob.objects.aggregate(bytes=Sum('size'), count=Count('pk'))
            versions = Version.objects.count()
        except DatabaseError as exc:
            connection.close()                  # the next scrape opens a new one
            log.warning('metrics: the database is failing, stored totals left out: %r', exc)
            return
        yield GaugeMetricFamily('oaio_stored_bytes', 'Bytes of all stored blobs (each content once)',
                                value=blobs['bytes'] or 0)
        yield GaugeMetricFamily('oaio_blobs', 'Stored blobs (distinct file contents)', value=blobs['count'])
        yield GaugeMetricFamily('oaio_versions', 'Versions of all objects', value=versions)


REGISTRY.register(_StoredCollector())


@contextlib.contextmanager
def measured(method: str, route: str, send):
    """Count one request and its duration; yields the ``send`` to answer it with (notes its status)."""
    status = None
    begun = time.perf_counter()

    async def observed_send(message):
        nonlocal status
        if message['type'] == 'http.response.start':
            status = message['status']
        await send(message)

    method = method if method in _METHODS else 'other'
    try:
        yield observed_send
    except BaseException:
        status = status or 500          # raised before answering: uvicorn answers 500
        raise
    finally:
        REQUESTS.labels(method, route, str(status or 'none')).inc()
        DURATION.labels(method, route).observe(time.perf_counter() - begun)


# parsed at startup: a mistyped address stops the server with its name, not every scrape with a 500
_ALLOWED = [ipaddress.ip_network(entry, strict=False) for entry in settings.OAIO_METRICS_ALLOW]


def may_read(client: tuple | None) -> bool:
    """Whether the peer ``client`` (an ASGI scope's host and port) may read the metrics."""
    try:
        address = ipaddress.ip_address(client[0])
    except (TypeError, ValueError):         # no peer (a Unix socket) or no IP address
        return False
    address = getattr(address, 'ipv4_mapped', None) or address
    return any(address in network for network in _ALLOWED)


async def metrics_app(scope, receive, send) -> None:
    """ASGI app of ``GET /metrics``."""
    if not may_read(scope.get('client')):
        await front.send_error(send, Forbidden(f'{PATH} is only for the addresses of OAIO_METRICS_ALLOW'), scope)
        return
    if scope['method'] not in ('GET', 'HEAD'):
        await front.send_error(send, MethodNotAllowed(f'{PATH} answers GET'), scope)
        return
    LONG_POLLS.set(watcher.waiting())           # read here, in the event loop that changes them
    UPLOADS.set(uploads.in_progress())
    body = await front.run(generate_latest, REGISTRY)
    await send({'type': 'http.response.start', 'status': 200, 'headers': [
        (b'content-type', CONTENT_TYPE_LATEST.encode()), (b'content-length', str(len(body)).encode()),
        (b'cache-control', b'no-store')]})
    await send({'type': 'http.response.body', 'body': body if scope['method'] == 'GET' else b''})
