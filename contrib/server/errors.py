"""The one place where errors become HTTP answers: every error body is JSON ``{"error", "detail"}``."""
import errno
import logging

from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse

from oaio.protocol import ProtocolError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the client caused; ``status`` and ``code`` go into the answer, ``extra`` into its body."""

    status = 400
    code = 'bad_request'

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(ApiError):
    status, code = 400, 'invalid'


class NotAuthenticated(ApiError):
    status, code = 401, 'not_authenticated'


class Forbidden(ApiError):
    status, code = 403, 'forbidden'


class NotFound(ApiError):
    status, code = 404, 'not_found'


class MethodNotAllowed(ApiError):
    status, code = 405, 'method_not_allowed'


class Conflict(ApiError):
    status, code = 409, 'conflict'


class TooLarge(ApiError):
    status, code = 413, 'too_large'


class Unavailable(ApiError):
    """The server cannot answer now (shutting down); the client retries."""
    status, code = 503, 'unavailable'


class TooManyRequests(ApiError):
    """Throttled; ``retry_after`` (seconds) becomes the Retry-After header and a body field."""
    status, code = 429, 'too_many_requests'


def error_response(status: int, code: str, detail: str, **extra) -> JsonResponse:
    """Build the JSON answer of an error."""
    return JsonResponse({'error': code, 'detail': detail, **extra}, status=status)


def response_for(exc: Exception) -> JsonResponse | None:
    """Map an exception to its JSON answer, or None if it is not a client error (then it is a 500)."""
    if isinstance(exc, ApiError):
        answer = error_response(exc.status, exc.code, exc.detail, **exc.extra)
        if 'retry_after' in exc.extra:
            answer['Retry-After'] = str(exc.extra['retry_after'])
        return answer
    if isinstance(exc, ProtocolError):
        return error_response(400, 'invalid', str(exc))
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, 'too_large', 'request body is larger than the limit of this server')
    if isinstance(exc, (SuspiciousOperation, BadRequest)):
        return error_response(400, 'bad_request', str(exc) or 'bad request')
    if isinstance(exc, PermissionDenied):
        return error_response(403, 'forbidden', str(exc) or 'forbidden')
    if isinstance(exc, Http404):
        return error_response(404, 'not_found', 'no such endpoint or object')
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        # the server's disk is full: the client keeps its data and retries later
        log.warning('no space left on the server: %s', exc)
        return error_response(507, 'insufficient_storage', 'no space left on the server; try again later')
    return None


class ApiErrorMiddleware:
    """Turn exceptions raised by views into JSON answers (client errors) or a logged JSON 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exc):
        return answer_for(exc, request.method, request.path)


def answer_for(exc: Exception, method: str, path: str) -> JsonResponse:
    """The JSON answer of an exception raised while serving ``method path``; a 500 is logged."""
    answer = response_for(exc)
    if answer is None:
        log.error('unexpected error in %s %s', method, path, exc_info=exc)
        return error_response(500, 'server_error', 'unexpected server error; see the server log')
    return answer


def csrf_failure(request, reason=''):
    """CSRF_FAILURE_VIEW: a JSON 403 instead of Django's HTML page."""
    return error_response(403, 'csrf', f'CSRF check failed: {reason}')


def not_found(request, exception=None):
    """handler404."""
    return error_response(404, 'not_found', f'no such endpoint: {request.path}')


def bad_request(request, exception=None):
    """handler400 (Django's own SuspiciousOperation handling, e.g. a disallowed host)."""
    return error_response(400, 'bad_request', 'bad request')


def forbidden(request, exception=None):
    """handler403."""
    return error_response(403, 'forbidden', 'forbidden')


def server_error(request):
    """handler500."""
    return error_response(500, 'server_error', 'unexpected server error; see the server log')
