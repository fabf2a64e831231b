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
from oaio.client.model import user_values

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
    infos = {}
    for oaio_id, obj in objects.items():
        root = client.files_root(oaio_id)
        root.mkdir(parents=True, exist_ok=True)
        state = client.sync_state(oaio_id)
        if state == 'synced' and any(p.CONFLICT_MARK in path for path in obj.file_paths):
            state = 'conflict'
        infos[oaio_id] = ObjectInfo(oaio_id, names[oaio_id], obj.client_values, obj.client_stamp,
                                    obj.csh_access_right, client.owner_of(oaio_id), state, root)
    return View(infos, {info.name: oaio_id for oaio_id, info in infos.items()})
