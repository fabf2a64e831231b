"""What the mount shows, as one immutable snapshot taken from the client.

Handlers never call into the client (its lock may be held by a sync for a long time): they read
the current :class:`View`, which background tasks replace after every sync and local change.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from oaio.client import OaioClient
from oaio.client import protocol as p
from oaio.client.merge import same_value
from oaio.client.model import OaiObject, user_values

from .names import unique_names


@dataclass(frozen=True)
class ObjectInfo:
    """One object as the mount shows it."""

    oaio_id: str
    name: str
    values: dict
    stamp: str
    right: str
    owner: str
    sync: str                   # synced | pending | conflict | error
    files_root: Path
    unsynced: frozenset[str] = frozenset()      # paths whose content here is not on the server yet
    values_pending: bool = False                # values (or the object itself) not on the server yet

    @property
    def writable(self) -> bool:
        return self.right in p.WRITE_RIGHTS

    def values_json(self) -> bytes:
        """values.json: the user's values, pretty-printed, keys sorted."""
        return (json.dumps(user_values(self.values), indent=2, sort_keys=True, ensure_ascii=False) + '\n').encode()


@dataclass(frozen=True)
class View:
    objects: dict[str, ObjectInfo] = field(default_factory=dict)       # by oaio_id
    by_name: dict[str, str] = field(default_factory=dict)              # directory name → oaio_id


def take_view(client: OaioClient) -> View:
    """Build the view from the client's objects (blocking: run it in a worker thread)."""
    objects = client.client_objectz
    names = unique_names({oaio_id: obj.client_values for oaio_id, obj in objects.items()})
    infos = {oaio_id: object_info(client, obj, names[oaio_id]) for oaio_id, obj in objects.items()}
    return View(infos, {info.name: oaio_id for oaio_id, info in infos.items()})


def object_info(client: OaioClient, obj: OaiObject, name: str = '') -> ObjectInfo:
    """One object of the client as the mount shows it (blocking; ``name`` may be left to the caller)."""
    root = client.files_root(obj.oaio_id)
    root.mkdir(parents=True, exist_ok=True)
    state = client.sync_state(obj.oaio_id)
    if state == 'synced' and any(p.CONFLICT_MARK in path for path in obj.file_paths):
        state = 'conflict'
    values_pending = obj.pending and (not obj.server_stamp or not same_value(
        {**obj.client_values, p.FILE_PATHS_KEY: None}, {**obj.server_values, p.FILE_PATHS_KEY: None}))
    return ObjectInfo(obj.oaio_id, name, obj.client_values, obj.client_stamp, obj.csh_access_right,
                      client.owner_of(obj.oaio_id), state, root, frozenset(client.unsynced_files(obj.oaio_id)),
                      values_pending)
