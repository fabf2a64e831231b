"""The oai object as the wire and the local store know it, and the original client's object ids."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from . import protocol as p

# the reserved values the client keeps itself (the object's attached files and their folder), in
# every version whoever writes the other values; ``_name`` is the user's like every other key
MANAGED_KEYS = (p.FILE_PATHS_KEY, p.ROOT_PATH_KEY)


def user_values(values: dict) -> dict:
    """``values`` without the keys the client manages (:data:`MANAGED_KEYS`)."""
    return {key: value for key, value in values.items() if key not in MANAGED_KEYS}


# the original protocol's look-alikes for characters that are special in paths and URLs
_LOOK_ALIKES = {
    '/': '\u2044', '|': '\u0964', '\\': '\ufe68', ':': '\ufe55', '*': '\ufe61', '?': '\ufe56', '"': '\uff02',
    "'": '\u2018', '<': '\u27e8', '>': '\u27e9', '(': '\u27ee', ')': '\u27ef', '[': '\u27e6', ']': '\u27e7',
    '{': '\ufe5b', '}': '\ufe5c', '#': '\ufe5f', ';': '\ufe54', '@': '\ufe6b', '&': '\ufe60', '=': '\ufe66',
    '+': '\ufe62', '$': '\ufe69', '%': '\ufe6a', '^': '\uff3e', ',': '\ufe50', ' ': '\u2423', '\x7f': '\u2421',
    **{chr(code): chr(0x2400 + code) for code in range(32)},
}
_DEFUSE_TABLE = str.maketrans(_LOOK_ALIKES)
URI_SEPARATOR, URI_SEPARATOR_LOOK_ALIKE = '://', '\u2afb'


@dataclass
class OaiObject:
    """An oai object: the ten fields of the wire protocol.

    ``server_stamp``/``server_values`` are the server version this device's state is based on
    (empty before the first upload) — the base of every merge; ``client_stamp``/``client_values``
    are the device's newest version. The object has pending local changes while
    ``client_stamp > server_stamp``.
    """

    oaio_id: str
    client_stamp: str = ''
    server_stamp: str = ''
    client_values: dict[str, Any] = field(default_factory=dict)
    server_values: dict[str, Any] = field(default_factory=dict)
    csh_id: str | None = None
    username: str = ''
    device_id: str = ''
    app_id: str = ''
    csh_access_right: str = ''

    @property
    def pending(self) -> bool:
        """True while the device has a version the server has not stored yet."""
        return self.client_stamp > self.server_stamp

    @property
    def file_paths(self) -> list[str]:
        """The attached files (relative paths) of the newest local version."""
        return list(self.client_values.get(p.FILE_PATHS_KEY, []))

    def to_dict(self) -> dict[str, Any]:
        """The wire form, sharing the values with the object (the callers serialize it at once:
        dataclasses.asdict's deep copy of 10,000 file paths cost more than sending them)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_wire(cls, data: object) -> OaiObject:
        """Build an object from a server's object dict, refusing invalid ids, stamps and values."""
        if not isinstance(data, dict):
            raise p.ProtocolError(f'an object must be a JSON object, got {type(data).__name__}')
        known = {name: copy.deepcopy(data[name]) for name in p.OBJECT_FIELDS if name in data}
        obj = cls(**known)
        p.check_oaio_id(obj.oaio_id)
        p.check_stamp(obj.client_stamp, 'client_stamp')
        p.check_values(obj.client_values)
        p.check_access_right(obj.csh_access_right, allow_none=False)
        return obj


def defuse(text: str) -> str:
    """Replace the characters that are special in paths and URLs by look-alikes (as the original)."""
    return text.replace(URI_SEPARATOR, URI_SEPARATOR_LOOK_ALIKE).translate(_DEFUSE_TABLE)


def object_id(user_name: str, device_id: str, app_id: str, stamp: str, values: dict) -> str:
    """The id the original client gives a new object: ``APP://USER@DEVICE/NAME/STAMP``, defused."""
    if not (user_name and device_id and app_id and stamp):
        raise p.ProtocolError('an object id needs a user name, device id, app id and stamp')
    url = f'{app_id}://{user_name}@{device_id}'
    if values.get(p.NAME_KEY):
        url += '/' + values[p.NAME_KEY]
    elif values.get(p.ROOT_PATH_KEY):
        url += '/' + values[p.ROOT_PATH_KEY].strip('/')
    elif len(values.get(p.FILE_PATHS_KEY, [])) == 1:
        url += '/' + values[p.FILE_PATHS_KEY][0]
    oaio_id = defuse(url + '/' + stamp)
    if len(oaio_id.encode()) > p.MAX_NAME_BYTES:      # keep the stamp, which makes the id unique
        head = defuse(url)
        while len((head + '⁄' + stamp).encode()) > p.MAX_NAME_BYTES:
            head = head[:-1]
        oaio_id = head + '⁄' + stamp
    return oaio_id
