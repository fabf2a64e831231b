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
        if key == p.FILE_PATHS_KEY or mine == was:
            chosen = theirs
        elif theirs == was or mine == theirs:
            chosen = mine
        else:
            chosen, lost = (mine, theirs) if local_is_newer else (theirs, mine)
            losers[key] = None if lost is _ABSENT else lost
        if chosen is not _ABSENT:
            merged[key] = chosen
    return ValuesMerge(merged, losers)


def conflict_name(path: str, device_id: str, stamp: str) -> str:
    """``dir/name.ext`` → ``dir/name.conflict-<device>-<stamp>.ext``."""
    directory, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)
    if not stem:                                    # dotfiles: '.bashrc' has no extension
        stem, ext = name, ''
    device = ''.join(char if char.isalnum() or char in '-_' else '_' for char in device_id)[:40] or 'device'
    return posixpath.join(directory, f'{stem}.conflict-{device}-{stamp}{ext}')


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
