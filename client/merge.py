"""Three-way merges against the last synced version: values key by key, files path by path.

Nothing is lost: a key changed on both sides keeps the newer value, and the losing values go into
a conflict copy; a file changed on both sides keeps both, the local one renamed to
``name.conflict-<device>-<stamp>.ext``.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from . import protocol as p

_ABSENT = object()


def same_value(a: object, b: object) -> bool:
    """Equal as JSON values. Unlike ``==``, 1, 1.0 and True (and 0, 0.0 and False) differ: changing
    one into another is an edit, which a merge must not take for "unchanged"."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(a[key], b[key]) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@dataclass
class ValuesMerge:
    """Merged values, and the losing side's values of keys changed on both sides."""

    values: dict
    losers: dict = field(default_factory=dict)


def merge_values(base: dict, local: dict, remote: dict, local_is_newer: bool) -> ValuesMerge:
    """Merge ``local`` and ``remote`` (both derived from ``base``) key by key.

    A key changed (added, modified or removed) on one side only takes that side's state. A key
    changed on both sides to different states takes the newer side's state; the older side's value
    is reported in ``losers`` (``None`` stands for a removed key). ``_file_paths`` is left to
    :func:`merge_files` and taken from ``remote`` here.
    """
    merged, losers = {}, {}
    for key in sorted(set(base) | set(local) | set(remote)):
        was, mine, theirs = base.get(key, _ABSENT), local.get(key, _ABSENT), remote.get(key, _ABSENT)
        if key == p.FILE_PATHS_KEY or same_value(mine, was):
            chosen = theirs
        elif same_value(theirs, was) or same_value(mine, theirs):
            chosen = mine
        else:
            chosen, lost = (mine, theirs) if local_is_newer else (theirs, mine)
            losers[key] = None if lost is _ABSENT else lost
        if chosen is not _ABSENT:
            merged[key] = chosen
    return ValuesMerge(merged, losers)


def conflict_name(path: str, device_id: str, stamp: str) -> str:
    """``dir/name.ext`` → ``dir/name.conflict-<device>-<stamp>.ext``; a long name is shortened so
    that the copy's name still fits :data:`~.protocol.MAX_NAME_BYTES`."""
    directory, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)
    if not stem:                                    # dotfiles: '.bashrc' has no extension
        stem, ext = name, ''
    device = ''.join(char if char.isalnum() or char in '-_' else '_' for char in device_id)[:40] or 'device'
    suffix = f'{p.CONFLICT_MARK}{device}-{stamp}'
    room = p.MAX_NAME_BYTES - len(suffix.encode())
    if len((stem + ext).encode()) > room:           # an invalid name would block the object's sync
        if len(ext.encode()) > room // 2:           # such a long "extension" is part of the name
            stem, ext = stem + ext, ''
        stem = stem.encode()[:room - len(ext.encode())].decode('utf-8', 'ignore')
    return posixpath.join(directory, f'{stem}{suffix}{ext}')


@dataclass
class FilesMerge:
    """Which files to take from the server, and which local files to keep under a conflict name."""

    paths: list[str]                                            # the merged _file_paths
    download: list[str] = field(default_factory=list)           # take the server's content
    remove: list[str] = field(default_factory=list)             # removed on the server, unchanged here
    conflicts: dict[str, str] = field(default_factory=dict)     # local path → its conflict copy's path


def merge_files(base: dict, local: dict, remote: dict, device_id: str, stamp: str) -> FilesMerge:
    """Merge file manifests ``{path: sha256}`` of the synced base, this device and the server.

    Changed on one side: that side wins. Changed on both (different content): the server's content
    keeps the name and the local content moves to a conflict copy. Removed on one side but changed
    on the other: the changed file stays — a removal never destroys an edit.
    """
    result = FilesMerge(paths=[])
    for path in sorted(set(base) | set(local) | set(remote)):
        was, mine, theirs = base.get(path), local.get(path), remote.get(path)
        if mine == theirs:
            keep = mine is not None
        elif mine == was:                   # only the server changed it
            keep = theirs is not None
            (result.download if keep else result.remove).append(path)
        elif theirs == was:                 # only this device changed it
            keep = mine is not None
        elif mine is None:                  # removed here, changed there: take theirs
            keep = True
            result.download.append(path)
        elif theirs is None:                # removed there, changed here: keep ours
            keep = True
        else:                               # changed on both sides
            keep = True
            result.download.append(path)
            copy = conflict_name(path, device_id, stamp)
            result.conflicts[path] = copy
            result.paths.append(copy)
        if keep:
            result.paths.append(path)
    result.paths.sort()
    return result
