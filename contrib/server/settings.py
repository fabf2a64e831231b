"""Django settings of the oaio server.

Configuration comes from the environment, so that ``oaio-server serve --data DIR`` needs none:

- ``OAIO_DATA``: the data directory (SQLite database, blob store, secret key); default ``./oaio-data``.
- ``DATABASE_URL``: a PostgreSQL URL (``postgres://user:pass@host/db``) instead of the embedded SQLite.
- ``OAIO_SECRET_KEY``: the secret key; default: generated once into ``DATA/secret_key`` (mode 0600).
- ``OAIO_ALLOWED_HOSTS``: comma-separated host names the server answers for; default ``*``.
- ``OAIO_STORAGE_HOSTS``: JSON dict ``{csh_id: {kwargs}}`` of extra storage hosts for ``csh_args/``.
- ``OAIO_PASSWORD_HASHER``: ``fast`` (MD5, for test suites only) or unset for Django's default.
- ``OAIO_HTTPS``: ``1`` when clients reach the server over https (cookies get ``Secure``; a TLS-terminating
  proxy must set ``X-Forwarded-Proto: https`` and strip it from clients).
- ``OAIO_TRUSTED_PROXIES``: comma-separated addresses (or networks) of reverse proxies whose ``X-Forwarded-For``
  and ``X-Forwarded-Proto`` are believed (by uvicorn, see cli.serve); default none.
- ``OAIO_LOGIN_FAILURES``, ``OAIO_LOGIN_LOCKOUT``, ``OAIO_LOGIN_ADDRESS_FAILURES``, ``OAIO_LOGIN_WINDOW``: login
  throttling (see throttle.py).
- ``OAIO_FEED_FALLBACK_INTERVAL``: on PostgreSQL, seconds between the change watcher's looks for commits of
  other server processes while it receives their notifications (see notify.py); default 5.
- ``OAIO_METRICS_ALLOW``: comma-separated addresses (or networks) that may read ``/metrics``; default loopback.
- ``OAIO_GC_GRACE_SECONDS``, ``OAIO_GC_INTERVAL_SECONDS``, ``OAIO_STAGED_DAYS``: garbage collection of chunks no
  version names (see gc.py); defaults 86400, 21600 (0: the server never collects by itself) and 7.
"""
import json
import os
import secrets
from pathlib import Path

import dj_database_url

from oaio import protocol

DATA_DIR = Path(os.environ.get('OAIO_DATA', 'oaio-data')).resolve()
BLOB_DIR = DATA_DIR / 'blobs'
TMP_DIR = DATA_DIR / 'tmp'


def _secret_key() -> str:
    """Read the generated secret key of the data directory, creating it (mode 0600) on first use."""
    if os.environ.get('OAIO_SECRET_KEY'):
        return os.environ['OAIO_SECRET_KEY']
    path = DATA_DIR / 'secret_key'
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, 'w') as file:
        file.write(secrets.token_urlsafe(50))
        file.flush()
        os.fsync(file.fileno())
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = False
ALLOWED_HOSTS = [host.strip() for host in os.environ.get('OAIO_ALLOWED_HOSTS', '*').split(',') if host.strip()]

INSTALLED_APPS = [
    'django.contrib.admin',
    'django.contrib.auth',
    'django.contrib.contenttypes',
    'django.contrib.sessions',
    'django.contrib.messages',
    'django.contrib.staticfiles',
    'oaio.server.apps.OaioServerConfig',
]

MIDDLEWARE = [
    'django.middleware.security.SecurityMiddleware',
    'whitenoise.middleware.WhiteNoiseMiddleware',
    'django.contrib.sessions.middleware.SessionMiddleware',
    'django.middleware.common.CommonMiddleware',
    'django.middleware.csrf.CsrfViewMiddleware',
    'django.contrib.auth.middleware.AuthenticationMiddleware',
    'django.contrib.messages.middleware.MessageMiddleware',
    'django.middleware.clickjacking.XFrameOptionsMiddleware',
    'oaio.server.errors.ApiErrorMiddleware',
]

ROOT_URLCONF = 'oaio.server.urls'
APPEND_SLASH = False        # a redirect would turn a POST into a GET that answers 200: unknown URLs are 404
TEMPLATES = [{
    'BACKEND': 'django.template.backends.django.DjangoTemplates',
    'APP_DIRS': True,
    'OPTIONS': {'context_processors': [
        'django.template.context_processors.request',
        'django.contrib.auth.context_processors.auth',
        'django.contrib.messages.context_processors.messages',
    ]},
}]
ASGI_APPLICATION = 'oaio.server.asgi.application'

if os.environ.get('DATABASE_URL'):
    DATABASES = {'default': dj_database_url.parse(os.environ['DATABASE_URL'], conn_max_age=60,
                                                  conn_health_checks=True)}
else:
    DATABASES = {'default': {
        'ENGINE': 'django.db.backends.sqlite3',
        'NAME': DATA_DIR / 'db.sqlite3',
        'OPTIONS': {
            # IMMEDIATE: a writing transaction takes the write lock at its start, so two concurrent
            # read-check-write transactions (the upload head check) serialize instead of failing.
            'transaction_mode': 'IMMEDIATE',
            'timeout': 30,
            'init_command': 'PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;',
        },
    }}
DEFAULT_AUTO_FIELD = 'django.db.models.BigAutoField'

if os.environ.get('OAIO_PASSWORD_HASHER') == 'fast':
    PASSWORD_HASHERS = ['django.contrib.auth.hashers.MD5PasswordHasher']

STORAGES = {
    'default': {'BACKEND': 'django.core.files.storage.FileSystemStorage',
                'OPTIONS': {'location': DATA_DIR / 'media'}},
    # content-addressed file blobs; replace with an S3-compatible backend (django-storages) in production
    'blobs': {'BACKEND': 'oaio.server.blobs.DurableFileSystemStorage',
              'OPTIONS': {'location': BLOB_DIR, 'allow_overwrite': True}},
    'staticfiles': {'BACKEND': 'django.contrib.staticfiles.storage.StaticFilesStorage'},
}
STATIC_URL = 'static/'
STATIC_ROOT = None                                  # WhiteNoise serves the admin's files from the apps
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = False

FILE_UPLOAD_TEMP_DIR = TMP_DIR
DATA_UPLOAD_MAX_MEMORY_SIZE = protocol.MAX_REQUEST_BODY_BYTES      # JSON request bodies (see oaio.protocol)
OAIO_MAX_FILE_BYTES = int(os.environ.get('OAIO_MAX_FILE_BYTES', 64 * 1024 ** 3))
# file uploads of one user reading their body at once in one server process; more get 429 + Retry-After
OAIO_MAX_UPLOADS_PER_USER = int(os.environ.get('OAIO_MAX_UPLOADS_PER_USER', '32'))
OAIO_FEED_PAGE = 1000                               # changes per change-feed answer
OAIO_FEED_MAX_WAIT = 60.0                           # seconds a long poll may wait
OAIO_FEED_POLL_INTERVAL = 0.05                      # seconds between checks for commits of other processes
# PostgreSQL: seconds between looks for commits of other processes while their NOTIFYs arrive (a safety net)
OAIO_FEED_FALLBACK_INTERVAL = float(os.environ.get('OAIO_FEED_FALLBACK_INTERVAL', 5))
OAIO_DEFAULT_STORAGE_HOST = 'oaio'                  # this server itself
OAIO_STORAGE_HOSTS = json.loads(os.environ.get('OAIO_STORAGE_HOSTS', '{}'))
# who may read /metrics (metrics.py): its counts tell how busy the server is and how much it holds
OAIO_METRICS_ALLOW = [entry.strip() for entry in os.environ.get('OAIO_METRICS_ALLOW', '127.0.0.0/8,::1').split(',')
                      if entry.strip()]
# garbage collection (gc.py): a chunk no version and no staged file names is deleted once its row is
# older than the grace (an upload in flight may have been told by blobs/missing/ that its user holds
# the chunk, and names it a moment later); `serve` collects every interval seconds (0: never)
OAIO_GC_GRACE_SECONDS = int(os.environ.get('OAIO_GC_GRACE_SECONDS', 24 * 3600))
OAIO_GC_INTERVAL_SECONDS = int(os.environ.get('OAIO_GC_INTERVAL_SECONDS', 6 * 3600))
OAIO_STAGED_DAYS = float(os.environ.get('OAIO_STAGED_DAYS', 7))     # staged files (files/ PUTs) older are dropped

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = 'Lax'
CSRF_COOKIE_HTTPONLY = False                        # the client copies the token into X-CSRFToken
CSRF_FAILURE_VIEW = 'oaio.server.errors.csrf_failure'
OAIO_HTTPS = os.environ.get('OAIO_HTTPS', '') == '1'
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = OAIO_HTTPS
if OAIO_HTTPS:
    # behind a TLS-terminating proxy, which sets this header (and strips it from what clients send)
    SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https')

# Reverse proxies whose X-Forwarded-For/-Proto uvicorn believes (cli.serve). None by default: the
# client address is the socket's peer, which a local process cannot forge. (OAIO_HTTPS, above, makes
# Django believe X-Forwarded-Proto: https from any peer, as before; it does not touch the address.)
OAIO_TRUSTED_PROXIES = [proxy.strip() for proxy in os.environ.get('OAIO_TRUSTED_PROXIES', '').split(',')
                        if proxy.strip()]

# Login throttling (throttle.py), on every path through authenticate(): failed logins are counted in
# Django's cache (the local memory of each server process; a restart forgets them) per pair of user
# name and client address, and per client address.
CACHES = {'default': {'BACKEND': 'django.core.cache.backends.locmem.LocMemCache', 'LOCATION': 'oaio'}}
AUTHENTICATION_BACKENDS = ['oaio.server.throttle.ThrottleBackend', 'django.contrib.auth.backends.ModelBackend']
OAIO_LOGIN_FAILURES = int(os.environ.get('OAIO_LOGIN_FAILURES', 5))         # of a user name from one address,
OAIO_LOGIN_LOCKOUT = float(os.environ.get('OAIO_LOGIN_LOCKOUT', 60))        # then it waits (s), doubling
OAIO_LOGIN_ADDRESS_FAILURES = int(os.environ.get('OAIO_LOGIN_ADDRESS_FAILURES', 50))     # from one address
OAIO_LOGIN_WINDOW = float(os.environ.get('OAIO_LOGIN_WINDOW', 15 * 60))     # s: their window; the longest wait

USE_TZ = True
TIME_ZONE = 'UTC'
LANGUAGE_CODE = 'en-us'

LOGGING = {
    'version': 1,
    'disable_existing_loggers': False,
    'formatters': {'plain': {'format': '%(asctime)s %(levelname)s %(name)s: %(message)s'}},
    'handlers': {'stderr': {'class': 'logging.StreamHandler', 'formatter': 'plain'}},
    'root': {'handlers': ['stderr'], 'level': 'WARNING'},
    'loggers': {
        'oaio': {'level': os.environ.get('OAIO_LOG_LEVEL', 'INFO')},
        'django.request': {'level': 'ERROR'},   # 4xx answers are the client's business; uvicorn logs them
    },
}
