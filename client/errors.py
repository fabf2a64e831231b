"""Domain exceptions of the oaio client; the facade turns them into ``error_message`` texts."""


class OaioError(Exception):
    """Base of every error the client reports."""


class OfflineError(OaioError):
    """The server cannot be reached (connection refused, DNS, timeout)."""


class AuthenticationError(OaioError):
    """The server refused the credentials or the session."""


class ServerError(OaioError):
    """The server answered with an error status; ``status`` and the JSON ``body`` say which."""

    def __init__(self, message: str, status: int = 0, body: object = None):
        super().__init__(message)
        self.status = status
        self.body = body if isinstance(body, dict) else {}


class ConflictError(ServerError):
    """409: the object changed on the server (``body['head']``) or already exists."""


class AccessDenied(ServerError):
    """403/404 on an object: it is not (or no longer) shared with this user, or the right is too low."""


class RedirectRefused(OaioError):
    """The server answered with a redirect, which the client never follows (it would carry the
    password, files and session to the address named). Not retried and not "offline": the address
    given as the server is wrong, or the traffic is being diverted. Nor a verdict on an object (no
    :class:`ServerError`): a download that meets it ends the sync round before the cursor moves on."""


class ClockSkewError(OaioError):
    """The clocks of this device and the server differ by more than the protocol allows."""


class StoreLockedError(OaioError):
    """Another client already uses this ``client_root``."""


class InvalidServerData(OaioError):
    """The server sent data that fails validation (hostile ids or paths, wrong hashes)."""


class NotFound(AccessDenied):
    """404: the object or user does not exist, or is not shared with this user (which the server does
    not tell apart from not existing)."""


def refined(exc: OaioError) -> OaioError:
    """The most specific type of ``exc`` (the HTTP layer raises :class:`AccessDenied` for 403 and 404)."""
    if type(exc) is AccessDenied and exc.status == 404:
        return NotFound(str(exc), exc.status, exc.body)
    return exc
