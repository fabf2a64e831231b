"""Protocol constants and validation shared by the oaio server, client and mount.

Everything that crosses the wire is checked here, once: object ids, stamps, relative file paths,
access rights and the ``X-OAIO-*`` context headers. The server refuses invalid input with a 400;
the client refuses invalid server data before it touches the disk. Every limit and reserved name
of the protocol is defined here and nowhere else. This module imports nothing but the standard
library, so the server imports it without the client's dependencies (``oaio.client.protocol`` is
this module under its older name).
"""
from __future__ import annotations

import ast
import datetime
import math
import re
import unicodedata

OBJECT_FIELDS = ('oaio_id', 'client_stamp', 'server_stamp', 'client_values', 'server_values',
                 'csh_id', 'username', 'device_id', 'app_id', 'csh_access_right')

NAME_KEY = '_name'
ROOT_PATH_KEY = '_root_path'
FILE_PATHS_KEY = '_file_paths'

CREATE_RIGHT = 'C'
DELETE_RIGHT = 'D'
UPDATE_RIGHT = 'U'
READ_RIGHT = 'r'
NO_RIGHT = 'x'
ACCESS_RIGHTS = (CREATE_RIGHT, DELETE_RIGHT, UPDATE_RIGHT, READ_RIGHT)
WRITE_RIGHTS = (CREATE_RIGHT, DELETE_RIGHT, UPDATE_RIGHT)
DELETE_RIGHTS = (CREATE_RIGHT, DELETE_RIGHT)

STAMP_FORMAT = '%Y%m%d%H%M%S%f'
OLDEST_STAMP = '20221231111111012345'
MAX_STAMP_DIFF_SECONDS = 69.0

HEADER_USER = 'X-OAIO-user'
HEADER_DEVICE = 'X-OAIO-dvc'
HEADER_APP = 'X-OAIO-app'
HEADER_SHA256 = 'X-OAIO-SHA256'

MAX_NAME_BYTES = 255            # one path component / one file name on common filesystems
MAX_PATH_BYTES = 4096           # a whole relative path
MAX_CONTEXT_CHARS = 128         # device and app ids from the X-OAIO-* headers
MAX_CSH_ID_CHARS = 64
MAX_VALUES_DEPTH = 100          # nested lists and objects in values: far below any JSON library's recursion limit
MAX_FILE_PATHS = 100_000        # attached files of one version (the server checks each against its store)

MiB = 1024 * 1024
MAX_VALUES_BYTES = 8 * MiB      # values.json as the mount shows it (pretty-printed UTF-8); a larger write: EFBIG
# The largest JSON request body the server reads (413 beyond). An upload carries the values twice (the
# new client_values and the server_values they replace), each as JSON escapes it -- every non-ASCII
# character: 'é' is 2 bytes of UTF-8 and 6 as \u00e9, so up to 3x values.json --, plus room for
# _file_paths (not in values.json) and the request's other fields.
MAX_REQUEST_BODY_BYTES = 2 * 3 * MAX_VALUES_BYTES + 16 * MiB
CHUNK_BYTES = MiB               # files are read, sent and received in pieces of this size
MAX_MISSING_HASHES = 10_000     # sha256 hashes in one blobs/missing/ or chunks/fetch/ request (clients ask in batches)

# The content engine (docs/protocol.md, "Chunks and packs"). A file of up to SINGLE_CHUNK_BYTES is one
# chunk, whose hash is the file's sha256; a larger file is cut into content-defined chunks (FastCDC:
# MIN_CHUNK_BYTES to MAX_CHUNK_BYTES, about AVG_CHUNK_BYTES on average, as Seafile and restic cut), so
# that an edit changes only the chunks around it. Every chunk is stored once, by its sha256.
MIN_CHUNK_BYTES = 256 * 1024
AVG_CHUNK_BYTES = MiB
MAX_CHUNK_BYTES = 4 * MiB
SINGLE_CHUNK_BYTES = MiB
MAX_FILE_CHUNKS = 1_000_000     # chunks of one file: 64 GiB in chunks of the smallest size, with room
MAX_PACK_BYTES = 64 * MiB       # the largest body of one chunks/ upload (clients send packs of PACK_BYTES)
PACK_BYTES = 8 * MiB

VALUES_FILE = 'values.json'     # the values in an object's folder (mount) and in conflict copies
FILES_FOLDER = 'filez'          # the attached files of each object, under the client's root
CONFLICT_MARK = '.conflict-'    # in the name of a conflict copy: name.conflict-<device>-<stamp>.ext

_STAMP_RE = re.compile(r'\d{20}')
_SHA256_RE = re.compile(r'[0-9a-f]{64}')
_FORBIDDEN_NAME_CHARS = frozenset('/\\')


class ProtocolError(ValueError, AssertionError):
    """Invalid protocol data: both a ValueError and (as the seed documents) an AssertionError."""


def now_stamp(at: datetime.datetime | None = None) -> str:
    """Return the UTC stamp (``YYYYMMDDHHMMSSffffff``) of ``at`` or of now."""
    at = at or datetime.datetime.now(datetime.timezone.utc)
    return at.strftime(STAMP_FORMAT)


def stamp_datetime(stamp: str) -> datetime.datetime:
    """Parse a valid stamp into an aware UTC datetime."""
    check_stamp(stamp)
    return datetime.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=datetime.timezone.utc)


def stamp_diff_seconds(earlier: str, later: str) -> float:
    """Seconds from ``earlier`` to ``later`` (negative if ``later`` is older)."""
    return (stamp_datetime(later) - stamp_datetime(earlier)).total_seconds()


def check_stamp(stamp: object, what: str = 'stamp') -> str:
    """Return ``stamp`` if it is a valid stamp not older than :data:`OLDEST_STAMP`, else raise."""
    if not isinstance(stamp, str) or not _STAMP_RE.fullmatch(stamp):
        raise ProtocolError(f"{what} must be 20 digits YYYYMMDDHHMMSSffffff, got {stamp!r:.60}")
    if stamp < OLDEST_STAMP:
        raise ProtocolError(f"{what} {stamp} is older than the oldest valid stamp {OLDEST_STAMP}")
    try:
        datetime.datetime.strptime(stamp, STAMP_FORMAT)
    except ValueError:
        raise ProtocolError(f"{what} {stamp} is not a valid date and time") from None
    return stamp


def _has_control_char(text: str) -> bool:
    return any(ord(char) < 32 or ord(char) == 127 or unicodedata.category(char) == 'Cc' for char in text)


def check_name(name: object, what: str = 'name') -> str:
    """Return ``name`` if it is safe as one file name component, else raise.

    Refused: non-strings, empty, ``.`` and ``..``, ``/`` or ``\\``, NUL and other control characters,
    more than :data:`MAX_NAME_BYTES` bytes of UTF-8, and strings that are not valid UTF-8.
    """
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{what} must be a non-empty string, got {name!r:.60}")
    if name in ('.', '..'):
        raise ProtocolError(f"{what} must not be {name!r}")
    if _FORBIDDEN_NAME_CHARS.intersection(name):
        raise ProtocolError(f"{what} must not contain '/' or '\\': {name!r:.80}")
    if _has_control_char(name):
        raise ProtocolError(f"{what} must not contain NUL or control characters: {name!r:.80}")
    try:
        size = len(name.encode('utf-8'))
    except UnicodeEncodeError:
        raise ProtocolError(f"{what} is not valid UTF-8: {name!r:.80}") from None
    if size > MAX_NAME_BYTES:
        raise ProtocolError(f"{what} is {size} bytes long, the limit is {MAX_NAME_BYTES}")
    return name


def check_oaio_id(oaio_id: object) -> str:
    """Return ``oaio_id`` if it is a valid object id (usable as one file name), else raise."""
    return check_name(oaio_id, 'oaio_id')


def check_relative_path(path: object, what: str = 'file path') -> str:
    """Return ``path`` if it is a safe relative POSIX path of valid names, else raise.

    Refused: absolute paths, empty components (``a//b``, trailing ``/``), ``.`` and ``..``
    components, backslashes, control characters, over-long components or paths.
    """
    if not isinstance(path, str) or not path:
        raise ProtocolError(f"{what} must be a non-empty string, got {path!r:.60}")
    if path.startswith('/'):
        raise ProtocolError(f"{what} must be relative, got absolute {path!r:.80}")
    if len(path.encode('utf-8', 'surrogatepass')) > MAX_PATH_BYTES:
        raise ProtocolError(f"{what} is longer than {MAX_PATH_BYTES} bytes")
    for part in path.split('/'):
        check_name(part, what)
    return path


def check_file_paths(paths: object) -> list[str]:
    """Return the ``_file_paths`` value if it is a list of distinct valid relative paths, else raise."""
    if not isinstance(paths, list):
        raise ProtocolError(f"{FILE_PATHS_KEY} must be a list of relative paths, got {type(paths).__name__}")
    if len(paths) > MAX_FILE_PATHS:
        raise ProtocolError(f"{FILE_PATHS_KEY} lists {len(paths)} paths, the limit is {MAX_FILE_PATHS} per object")
    for path in paths:
        check_relative_path(path)
    if len(set(paths)) != len(paths):
        raise ProtocolError(f"{FILE_PATHS_KEY} lists a path twice")
    return paths


def check_storable_text(text: str, what: str = 'text') -> str:
    """Return ``text`` if databases can store it (no NUL, no unpaired surrogates), else raise."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        raise ProtocolError(f"{what} must not contain unpaired surrogates: {text!r:.80}") from None
    if '\x00' in text:
        raise ProtocolError(f"{what} must not contain NUL characters: {text!r:.80}")
    return text


_JSON_SCALARS = (str, int, float, bool, type(None))


def _check_storable_values(values: dict) -> None:
    """Every item of ``values`` a JSON type (dicts with string keys, lists, strings, numbers,
    booleans, null — no datetime, tuple, set or bytes, which ``json`` would refuse or silently
    change), every string storable, every number finite (JSON has no NaN), and at most
    :data:`MAX_VALUES_DEPTH` levels of nesting."""
    pending = [(values, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            check_storable_text(item, 'values')
        elif isinstance(item, float) and not math.isfinite(item):
            raise ProtocolError(f"values must not contain {item} (not a JSON number)")
        elif isinstance(item, (dict, list)):
            if depth > MAX_VALUES_DEPTH:
                raise ProtocolError(f"values are nested deeper than {MAX_VALUES_DEPTH} levels")
            if isinstance(item, dict) and not all(isinstance(key, str) for key in item):
                raise ProtocolError("values keys must be strings, at every level")
            children = [*item, *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif not isinstance(item, _JSON_SCALARS):
            raise ProtocolError(f"values must hold JSON types only, got {type(item).__name__}: {item!r:.40}")


def check_values(values: object) -> dict:
    """Return ``values`` if it is a dict with string keys and valid reserved keys, else raise."""
    if not isinstance(values, dict):
        raise ProtocolError(f"values must be a JSON object, got {type(values).__name__}")
    if not all(isinstance(key, str) for key in values):
        raise ProtocolError("values keys must be strings")
    if FILE_PATHS_KEY in values:
        check_file_paths(values[FILE_PATHS_KEY])
    if NAME_KEY in values and not isinstance(values[NAME_KEY], str):
        raise ProtocolError(f"{NAME_KEY} must be a string")
    if ROOT_PATH_KEY in values and not isinstance(values[ROOT_PATH_KEY], str):
        raise ProtocolError(f"{ROOT_PATH_KEY} must be a string")
    _check_storable_values(values)
    return values


def check_access_right(right: object, allow_none: bool = True) -> str:
    """Return ``right`` if it is one of C, D, U, r (or x when ``allow_none``), else raise."""
    allowed = ACCESS_RIGHTS + ((NO_RIGHT,) if allow_none else ())
    if right not in allowed:
        raise ProtocolError(f"access right must be one of {', '.join(allowed)}, got {right!r:.20}")
    return right


def check_sha256(digest: object) -> str:
    """Return ``digest`` if it is a lowercase hex sha256, else raise."""
    if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
        raise ProtocolError(f"sha256 must be 64 lowercase hex digits, got {digest!r:.80}")
    return digest


def check_chunk_list(chunks: object, size: int, what: str = 'chunks') -> list:
    """Return ``chunks`` if it is a list ``[[sha256, size], …]`` of chunks of sizes 1 to
    :data:`MAX_CHUNK_BYTES` that add up to ``size``, else raise."""
    if not isinstance(chunks, list) or not chunks or len(chunks) > MAX_FILE_CHUNKS:
        raise ProtocolError(f"{what} must be a non-empty list of at most {MAX_FILE_CHUNKS} [sha256, size] pairs")
    total = 0
    for chunk in chunks:
        if not isinstance(chunk, list) or len(chunk) != 2:
            raise ProtocolError(f"{what} must be a list of [sha256, size] pairs, got {chunk!r:.80}")
        check_sha256(chunk[0])
        if type(chunk[1]) is not int or not 0 < chunk[1] <= MAX_CHUNK_BYTES:
            raise ProtocolError(f"a chunk's size must be 1 to {MAX_CHUNK_BYTES} bytes, got {chunk[1]!r:.40}")
        total += chunk[1]
    if total != size:
        raise ProtocolError(f"{what} add up to {total} bytes, not the file's size {size}")
    return chunks


def pack_header(sha256: str, size: int) -> bytes:
    """The header of one chunk in a pack: ``<sha256 hex> <size>\n``, followed by the chunk's bytes."""
    return f'{sha256} {size}\n'.encode()


_PACK_HEADER_RE = re.compile(rb'([0-9a-f]{64}) (0|[1-9][0-9]{0,9})\n')
PACK_HEADER_BYTES = 64 + 1 + 10 + 1


class PackParser:
    """Reads a pack (a chunks/ upload body, a chunks/fetch/ answer) as it arrives, in any pieces:
    :meth:`feed` returns ``("start", sha256, size)``, ``("data", bytes)`` and ``("end", sha256)``
    events; :meth:`close` raises if the pack ended inside a chunk. Sizes above ``max_chunk`` and
    malformed headers raise :class:`ProtocolError`. Hashes are the caller's to check."""

    def __init__(self, max_chunk: int = MAX_CHUNK_BYTES):
        self.max_chunk = max_chunk
        self._header = b''
        self._left = 0
        self._sha256 = ''

    def feed(self, data: bytes) -> list[tuple]:
        events: list[tuple] = []
        view = memoryview(data)
        while view:
            if self._left:
                piece = view[:self._left]
                events.append(('data', bytes(piece)))
                self._left -= len(piece)
                view = view[len(piece):]
                if not self._left:
                    events.append(('end', self._sha256))
                continue
            newline = bytes(view[:PACK_HEADER_BYTES]).find(b'\n')
            if newline < 0:
                self._header += bytes(view)
                if len(self._header) > PACK_HEADER_BYTES:
                    raise ProtocolError('a pack holds a malformed chunk header')
                break
            line = self._header + bytes(view[:newline + 1])
            view = view[newline + 1:]
            self._header = b''
            match = _PACK_HEADER_RE.fullmatch(line)
            if not match:
                raise ProtocolError(f'a pack holds a malformed chunk header {line[:80]!r}')
            self._sha256, self._left = match[1].decode(), int(match[2])
            if self._left > self.max_chunk:
                raise ProtocolError(f'a chunk of {self._left} bytes is larger than the limit of {self.max_chunk}')
            events.append(('start', self._sha256, self._left))
            if not self._left:                      # the empty file's content
                events.append(('end', self._sha256))
        return events

    def close(self) -> None:
        if self._left or self._header:
            raise ProtocolError('the pack ends inside a chunk')


def check_csh_id(csh_id: object) -> str:
    """Return ``csh_id`` (storage host id) if it is a short valid name, else raise."""
    check_name(csh_id, 'csh_id')
    if len(csh_id) > MAX_CSH_ID_CHARS:
        raise ProtocolError(f"csh_id is longer than {MAX_CSH_ID_CHARS} characters")
    return csh_id


def encode_context(value: str) -> str:
    """Encode an id for an ``X-OAIO-*`` header as the original client does: ``repr`` of its UTF-8."""
    return repr(value.encode('utf-8'))


def decode_context(header: str | None, what: str = 'header') -> str:
    """Decode an ``X-OAIO-*`` header value: a bytes literal like ``b'J\\xc3\\xbcrgen'`` or plain text.

    The literal is parsed with :func:`ast.literal_eval` on a bounded, bytes-only input (never
    ``eval``); the result must be valid UTF-8 without control characters. A value that starts like
    a literal (``b'`` or ``b"``) must be exactly one bytes literal, e.g. not ``b'x' + b'y'``.
    """
    if not header:
        return ''
    if len(header) > 4 * MAX_CONTEXT_CHARS + 3:
        raise ProtocolError(f"{what} is too long")
    text = header
    if header[:2] in ("b'", 'b"'):
        try:
            raw = ast.literal_eval(header)
            if not isinstance(raw, bytes):
                raise ValueError('not a bytes literal')
            text = raw.decode('utf-8')
        except (ValueError, SyntaxError, UnicodeDecodeError):
            raise ProtocolError(f"{what} is not a valid UTF-8 bytes literal: {header!r:.80}") from None
    if len(text) > MAX_CONTEXT_CHARS or _has_control_char(text):
        raise ProtocolError(f"{what} is too long or contains control characters: {text!r:.80}")
    return text
