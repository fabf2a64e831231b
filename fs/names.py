"""Names in the mount: editor temp files, and the unique, safe directory name of every object."""
from __future__ import annotations

import fnmatch
import functools
import posixpath
import re

from oaio.client import protocol as p

VALUES_FILE = p.VALUES_FILE

# editor and tool temp files: kept locally, never uploaded
TEMP_PATTERNS = ('4913', '.*.swp', '.*.swo', '.*.swx', '*~', '.#*', '#*#', '.goutputstream-*', '.~lock.*#', '~$*',
                 '.fuse_hidden*')
_SED_TEMP = re.compile(r'sed[A-Za-z0-9]{6}')


def is_temp_name(name: str) -> bool:
    """True for editor/tool scratch files (vim, emacs, gedit, LibreOffice, MS Office, sed -i, FUSE)."""
    return bool(_SED_TEMP.fullmatch(name)) or any(fnmatch.fnmatchcase(name, pattern) for pattern in TEMP_PATTERNS)


@functools.lru_cache(maxsize=8192)
def is_temp_path(relative: str) -> bool:
    """True if any component of ``relative`` is a temp name."""
    return any(is_temp_name(part) for part in relative.split('/'))


def _safe(name: str) -> str:
    name = ''.join('\u2044' if char == '/' else char for char in name if ord(char) >= 32 and ord(char) != 127)
    name = name.strip()
    if name in ('', '.', '..') or name == VALUES_FILE:
        return ''
    while len(name.encode()) > p.MAX_NAME_BYTES - 8:       # room for a ' (NN)' suffix
        name = name[:-1]
    return name


def display_name(oaio_id: str, values: dict) -> str:
    """The directory name of an object: ``_name``, else its single file's name, else its root
    folder's name, else its id — made safe for a file name."""
    candidates = [values.get(p.NAME_KEY)]
    files = values.get(p.FILE_PATHS_KEY) or []
    if len(files) == 1 and isinstance(files[0], str):
        candidates.append(posixpath.basename(files[0]))
    if isinstance(values.get(p.ROOT_PATH_KEY), str):
        candidates.append(posixpath.basename(values[p.ROOT_PATH_KEY].rstrip('/')))
    for candidate in candidates:
        if isinstance(candidate, str) and _safe(candidate):
            return _safe(candidate)
    return _safe(oaio_id) or 'object'


def unique_names(objects: dict[str, dict]) -> dict[str, str]:
    """``{oaio_id: values}`` → ``{oaio_id: directory name}``, unique, the same on every device:
    clashing names get ' (2)', ' (3)', … in the order of their ids."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for oaio_id in sorted(objects):
        base = display_name(oaio_id, objects[oaio_id])
        name, number = base, 1
        while name in taken:
            number += 1
            name = f'{base} ({number})'
        taken.add(name)
        names[oaio_id] = name
    return names
