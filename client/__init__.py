"""oaio.client — the OaioClient library: offline-first sync of oai objects with an oaio server.

The public API is :class:`OaioClient` (the original client's API, see the README) plus the
model and error types re-exported here.
"""
from .client import DEFAULT_STORAGE_HOST, OaioClient
from .errors import (AccessDenied, AuthenticationError, ClockSkewError, ConflictError, InvalidServerData, NotFound,
                     OaioError, OfflineError, ServerError, StoreLockedError)
from .model import OaiObject, object_id
from .protocol import ProtocolError
from .store import LAST_SYNC_STAMP_FILE

__all__ = ['OaioClient', 'OaiObject', 'object_id', 'LAST_SYNC_STAMP_FILE', 'DEFAULT_STORAGE_HOST', 'ProtocolError',
           'OaioError', 'OfflineError', 'AuthenticationError', 'ServerError', 'ConflictError', 'AccessDenied',
           'ClockSkewError', 'StoreLockedError', 'InvalidServerData', 'NotFound']
