"""The protocol's limits hold end to end: the largest values.json the mount accepts is one the
server takes (also when the upload carries it twice: the values it replaces and the new ones) and
the other device shows; one byte more is refused at the write (EFBIG)."""
from __future__ import annotations

import errno
import json
import os

import pytest

from oaio import protocol as p

from oaio_testing import wait_for


def largest_values_json(name: str, char: str) -> bytes:
    """values.json of exactly MAX_VALUES_BYTES as the mount shows it, of a 2-byte ``char`` so that
    it is about three times as long as JSON on the wire (every 'é' is sent as \\u00e9)."""
    def as_shown(text: str) -> bytes:
        return (json.dumps({'_name': name, 'text': text}, indent=2, sort_keys=True, ensure_ascii=False) + '\n').encode()
    room = p.MAX_VALUES_BYTES - len(as_shown(''))
    content = as_shown(char * (room // 2) + 'a' * (room % 2))
    assert len(content) == p.MAX_VALUES_BYTES
    return content


@pytest.mark.timeout(240)
def test_the_largest_values_json_reaches_the_other_device_and_one_byte_more_is_efbig(mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    (a / 'Big').mkdir()
    a.remote.wait_object('Big')
    content = largest_values_json('Big', 'é')
    fd = os.open(a / 'Big/values.json', os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.write(fd, content) == len(content)
        with pytest.raises(OSError) as refused:
            os.write(fd, b' ')
        assert refused.value.errno == errno.EFBIG
    finally:
        os.close(fd)                                # applies the MAX_VALUES_BYTES written
    wire = len(json.dumps(json.loads(content)).encode())
    assert 2.9 * p.MAX_VALUES_BYTES < wire and 2 * wire < p.MAX_REQUEST_BODY_BYTES

    wait_for(lambda: shown(b / 'Big/values.json') == content, timeout=60, what='the largest values.json on B')
    # the next upload carries both: the new values and the largest ones it replaces
    content = largest_values_json('Big', 'ü')
    (a / 'Big/values.json').write_bytes(content)
    wait_for(lambda: shown(b / 'Big/values.json') == content, timeout=60, what='the next largest values.json on B')


def shown(path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
