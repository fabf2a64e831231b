"""Hostile input on a real mount: names the protocol cannot carry, names that look alike, and
values.json written to exhaust the mount (size, nesting, huge integers).

The policy (README, "The drive"): a new name that is not valid UTF-8 or holds control characters
or a backslash is refused at once with EINVAL, one over 255 bytes with ENAMETOOLONG — nothing is
created that could not be synchronized. NFC/NFD and case variants are distinct names (as on ext4)
and sync as separate files. values.json over 8 MiB (oaio.protocol.MAX_VALUES_BYTES) fails the write
with EFBIG; invalid, too deeply nested or over-large-number JSON fails close() with EINVAL; the mount
stays responsive and its memory bounded.
"""
from __future__ import annotations

import errno
import json
import os
import time
import unicodedata

import pytest

from oaio import protocol as p

MAX_HWM_KIB = 300 * 1024


def new_object(m, name: str = 'Obj'):
    os.mkdir(m / name)
    m.remote.wait_object(name)
    return m / name


def errno_of(function, *args) -> int:
    with pytest.raises(OSError) as failure:
        function(*args)
    return failure.value.errno


def create(path: bytes) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def memory_kib(m, key: str) -> int:
    with open(f'/proc/{m.process.pid}/status') as status:
        for line in status:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise AssertionError(f'{key} not in /proc/{m.process.pid}/status')


@pytest.mark.parametrize('name', [b'a\x01b', b'tab\there', b'new\nline', b'\x7f', b'back\\slash',
                                  b'\xff\xfe', b'latin1-caf\xe9', b'\xed\xa0\x80surrogate'],
                         ids=['SOH', 'tab', 'newline', 'DEL', 'backslash', 'ff-fe', 'latin1', 'utf8-surrogate'])
def test_names_the_protocol_refuses_are_refused_with_einval(mount, name):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'good.txt').write_bytes(b'good')
    base = os.fsencode(obj)
    assert errno_of(create, base + b'/' + name) == errno.EINVAL
    assert errno_of(os.mkdir, base + b'/' + name) == errno.EINVAL
    assert errno_of(os.rename, base + b'/good.txt', base + b'/' + name) == errno.EINVAL
    assert errno_of(os.mkdir, os.fsencode(m.path) + b'/' + name) == errno.EINVAL     # as an object
    assert sorted(os.listdir(base)) == [b'good.txt', b'values.json']
    assert (obj / 'good.txt').read_bytes() == b'good'
    m.remote.wait_files('Obj', {'good.txt': b'good'})


def test_long_names_255_bytes_work_and_longer_are_enametoolong(mount):
    m = mount('alice')
    obj = new_object(m)
    longest = 'é' * 127 + 'x'                   # 255 bytes of UTF-8
    assert len(longest.encode()) == 255
    (obj / longest).write_bytes(b'longest')
    for size in (256, 300, 1000):
        assert errno_of(create, os.fsencode(obj) + b'/' + b'y' * size) == errno.ENAMETOOLONG
        assert errno_of(os.mkdir, os.fsencode(obj) + b'/' + b'y' * size) == errno.ENAMETOOLONG
        assert errno_of(os.rename, obj / longest, os.fsencode(obj) + b'/' + b'y' * size) == errno.ENAMETOOLONG
    assert errno_of(os.mkdir, os.fsencode(m.path) + b'/' + b'o' * 300) == errno.ENAMETOOLONG
    assert sorted(os.listdir(obj)) == sorted([longest, 'values.json'])
    m.remote.wait_files('Obj', {longest: b'longest'})


def test_nfc_nfd_and_case_variants_are_distinct_files_and_sync_separately(mount):
    m = mount('alice')
    obj = new_object(m)
    nfc, nfd = unicodedata.normalize('NFC', 'café.txt'), unicodedata.normalize('NFD', 'café.txt')
    assert nfc != nfd
    variants = {nfc: b'composed', nfd: b'decomposed', 'Readme': b'Readme', 'README': b'README',
                'readme': b'readme'}
    for name, content in variants.items():
        with open(obj / name, 'xb') as file:    # exclusive: a variant never replaces another
            file.write(content)
    for name, content in variants.items():
        assert (obj / name).read_bytes() == content
    assert sorted(os.listdir(obj)) == sorted([*variants, 'values.json'])
    m.remote.wait_files('Obj', variants)

    other = mount('alice', 'dev2')              # and another device gets all of them, none overwritten
    m.wait_for(lambda: sorted(os.listdir(other / 'Obj')) == sorted([*variants, 'values.json']),
               what='the variants on the second device')
    for name, content in variants.items():
        assert (other / 'Obj' / name).read_bytes() == content


def test_a_100_mb_values_json_is_refused_with_efbig_and_the_mount_stays_responsive(mount):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'values.json').write_text(json.dumps({'_name': 'Obj', 'before': 1}))
    m.remote.wait_object('Obj', lambda head: head['client_values'].get('before') == 1)
    m.expect_log('not saved, the previous values stay')     # the refused remainder is judged at close
    chunk = b'[' + b'1,' * (512 * 1024) + b'1]'              # about 1 MiB
    fd = os.open(obj / 'values.json', os.O_WRONLY | os.O_TRUNC)
    written, refused = 0, None
    try:
        os.write(fd, b'{"big": [')
        while written < 100 * 1024 * 1024:
            try:
                written += os.write(fd, chunk + b',')
            except OSError as exc:
                refused = exc.errno
                break
    finally:
        try:
            os.close(fd)
        except OSError as exc:
            assert exc.errno == errno.EINVAL
    assert refused == errno.EFBIG, f'{written} bytes written without EFBIG'
    assert written <= p.MAX_VALUES_BYTES
    assert json.loads((obj / 'values.json').read_text()) == {'_name': 'Obj', 'before': 1}
    started = time.monotonic()
    (obj / 'after.txt').write_bytes(b'still here')
    assert sorted(os.listdir(obj)) == ['after.txt', 'values.json']
    assert time.monotonic() - started < 5
    m.remote.wait_files('Obj', {'after.txt': b'still here'})
    assert memory_kib(m, 'VmHWM') < MAX_HWM_KIB


@pytest.mark.parametrize('text', [
    '{"deep": ' + '[' * 10_000 + ']' * 10_000 + '}',
    '{"deep": ' + '{"a": ' * 10_000 + '1' + '}' * 10_000 + '}',
    '{"huge": ' + '9' * 100_000 + '}',
    '{"huge": -' + '1' * 100_000 + '}',
], ids=['lists-10000-deep', 'objects-10000-deep', '100000-digits', 'negative-100000-digits'])
def test_deep_nesting_and_huge_integers_are_einval_with_bounded_memory(mount, text):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'values.json').write_text(json.dumps({'_name': 'Obj', 'before': 1}))
    m.expect_log('not saved, the previous values stay')
    with pytest.raises(OSError) as failure:
        with open(obj / 'values.json', 'w') as file:
            file.write(text)
    assert failure.value.errno == errno.EINVAL          # not EIO: a refusal, not a crash
    assert json.loads((obj / 'values.json').read_text()) == {'_name': 'Obj', 'before': 1}
    (obj / 'after.txt').write_bytes(b'still here')
    m.remote.wait_files('Obj', {'after.txt': b'still here'})
    m.remote.wait_object('Obj', lambda head: head['client_values'].get('before') == 1)
    assert not any('Traceback' in text or 'unexpected error' in text for _, text in m.records())
    assert memory_kib(m, 'VmHWM') < MAX_HWM_KIB
