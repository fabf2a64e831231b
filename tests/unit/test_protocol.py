"""The protocol's checks (oaio.protocol): what the server refuses with a 400 and the client before it
touches the disk, and that its limits fit together."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
import types

import pytest

from oaio import protocol as p
from oaio.client import protocol as client_protocol

STAMP = '20261125101010123456'


def test_the_client_name_re_exports_the_same_objects():
    public = {name for name, value in vars(p).items()          # submodules (oaio.protocol.durable) are not re-exported
              if not name.startswith('_') and not isinstance(value, types.ModuleType)}
    assert all(getattr(client_protocol, name) is getattr(p, name) for name in public)


def test_importing_the_protocol_imports_neither_the_client_nor_requests():
    probe = 'import sys, oaio.protocol; print(sorted(m for m in ("requests", "oaio.client") if m in sys.modules))'
    out = subprocess.run([sys.executable, '-c', probe], check=True, capture_output=True, text=True).stdout
    assert out.strip() == '[]'


def test_protocol_errors_are_value_and_assertion_errors():
    with pytest.raises(ValueError):
        p.check_name('')
    with pytest.raises(AssertionError):
        p.check_name('')


@pytest.mark.parametrize('name', ['a', 'café', 'Ünïcödé name.txt', 'x' * 255, 'é' * 127, '.hidden', 'a b'])
def test_valid_names(name):
    assert p.check_name(name) == name


@pytest.mark.parametrize('name', ['', '.', '..', 'a/b', 'a\\b', 'nul\x00', 'tab\t', 'del\x7f', 'c1\x85',
                                  'x' * 256, 'é' * 128, 'lone\udc80', None, 5, b'bytes'])
def test_invalid_names(name):
    with pytest.raises(p.ProtocolError):
        p.check_name(name)


@pytest.mark.parametrize('path', ['a', 'a/b/c.txt', 'folder/.hidden', '/'.join(['d' * 255] * 16)])
def test_valid_relative_paths(path):
    assert p.check_relative_path(path) == path


@pytest.mark.parametrize('path', ['', '/abs', 'a//b', 'a/', 'a/./b', 'a/../b', '..', 'a\\b',
                                  '/'.join(['d' * 255] * 17)])
def test_invalid_relative_paths(path):
    with pytest.raises(p.ProtocolError):
        p.check_relative_path(path)


def test_file_paths_are_distinct_and_bounded():
    assert p.check_file_paths(['a', 'b/c']) == ['a', 'b/c']
    for bad in (['a', 'a'], 'a', [1], [str(n) for n in range(p.MAX_FILE_PATHS + 1)]):
        with pytest.raises(p.ProtocolError):
            p.check_file_paths(bad)


@pytest.mark.parametrize('stamp', ['2026112510101012345', '2026112510101012345x', '20221231111111012344',
                                   '20261325101010123456', 20261125101010123456, None])
def test_invalid_stamps(stamp):
    with pytest.raises(p.ProtocolError):
        p.check_stamp(stamp)


def test_stamps_round_trip_and_differ_in_seconds():
    assert p.check_stamp(STAMP) == STAMP
    assert p.check_stamp(p.now_stamp()) > STAMP
    assert p.stamp_diff_seconds(STAMP, '20261125101011123456') == 1.0
    assert p.now_stamp(p.stamp_datetime(STAMP)) == STAMP


@pytest.mark.parametrize('values', [{}, {'a': [1, 2.5, None, True, {'b': 'c'}]}, {p.NAME_KEY: 'n'},
                                    {p.FILE_PATHS_KEY: ['x.txt']}])
def test_valid_values(values):
    assert p.check_values(values) is values


def nested(depth: int) -> dict:
    values: dict = {}
    for _ in range(depth - 1):
        values = {'d': values}
    return values


@pytest.mark.parametrize('values', [[], 'x', {1: 'a'}, {p.NAME_KEY: 5}, {p.ROOT_PATH_KEY: []},
                                    {p.FILE_PATHS_KEY: ['/abs']}, {'nan': float('nan')}, {'inf': float('inf')},
                                    {'nul': 'a\x00b'}, {'k\x00': 1}, {'lone': '\udc80'},
                                    nested(p.MAX_VALUES_DEPTH + 1)])
def test_invalid_values(values):
    with pytest.raises(p.ProtocolError):
        p.check_values(values)


def test_values_nested_up_to_the_limit_are_valid():
    assert p.check_values(nested(p.MAX_VALUES_DEPTH))


@pytest.mark.parametrize('right', ['C', 'D', 'U', 'r'])
def test_access_rights(right):
    assert p.check_access_right(right, allow_none=False) == right
    assert p.check_access_right('x') == 'x'
    for bad in ('x', 'R', '', None):
        with pytest.raises(p.ProtocolError):
            p.check_access_right(bad, allow_none=False)


def test_sha256_and_csh_id():
    assert p.check_sha256('0' * 64) == '0' * 64
    for bad in ('0' * 63, 'A' * 64, 'g' * 64, None):
        with pytest.raises(p.ProtocolError):
            p.check_sha256(bad)
    assert p.check_csh_id('oaio') == 'oaio'
    with pytest.raises(p.ProtocolError):
        p.check_csh_id('h' * (p.MAX_CSH_ID_CHARS + 1))


@pytest.mark.parametrize('text', ['Jürgen', 'dev-1', '日本', ''])
def test_context_headers_round_trip(text):
    assert p.decode_context(p.encode_context(text)) == text


@pytest.mark.parametrize('header', ["b'x' + b'y'", "b'\\xff'", "b'a\\x00'", "b'" + 'x' * 600 + "'",
                                    "b'\\n'", 'x' * (p.MAX_CONTEXT_CHARS + 1), "b'__import__'[0]"])
def test_invalid_context_headers(header):
    with pytest.raises(p.ProtocolError):
        p.decode_context(header)


def test_the_limits_fit_together():
    """An upload of the largest values.json, all of it non-ASCII (JSON escapes each 2-byte character
    as 6 bytes), twice -- the new values and those they replace -- fits in one request body."""
    text = 'é' * (p.MAX_VALUES_BYTES // 2)
    wire = len(json.dumps({'text': text}).encode())
    assert 2 * wire < p.MAX_REQUEST_BODY_BYTES
    assert p.MAX_PATH_BYTES >= p.MAX_NAME_BYTES
    assert p.CONFLICT_MARK.startswith('.') and p.VALUES_FILE == 'values.json' and p.FILES_FOLDER == 'filez'


@pytest.mark.parametrize('values', [
    {'when': datetime.datetime(2026, 12, 2, 8, 0)},
    {'pair': (1, 2)},
    {'tags': {'a', 'b'}},
    {'raw': b'bytes'},
    {'nested': {1: 'an int key, which json would turn into "1"'}},
    {'deep': [{'x': [object()]}]},
], ids=['datetime', 'tuple', 'set', 'bytes', 'int-key', 'object'])
def test_values_hold_json_types_only(values):
    with pytest.raises(p.ProtocolError):
        p.check_values(values)


def test_json_values_pass():
    values = {'a': [1, 2.5, True, False, None, {'b': 'c'}], 'd': {}, 'e': ''}
    assert p.check_values(values) is values
