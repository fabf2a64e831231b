"""Our own POSIX behaviour suite on a real mount: what a program may rely on inside an object.

Complements test_operations.py (which checks each operation on the mount and the server) with the
corner cases of the POSIX file model: open descriptors outliving their name, O_APPEND from two
descriptors, ftruncate both ways, sparse files, readdir while the directory changes, mtime/size.

The expected failures are written down here, each with its reason, and are ``xfail(strict=True)``:
should one start to pass, the suite fails until the list (and README's drive section) is updated.
"""
from __future__ import annotations

import ctypes
import errno
import os
import threading
import time

import pytest

# What the drive refuses by design — a test of the POSIX behaviour exists for each and is expected
# to fail, strictly, with this reason.
EXPECTED_FAILURES = {
    'hard_link': 'refused by design (EPERM): an object holds files by path; two names of one inode '
                 'cannot be synchronized, other devices would get two independent copies',
    'symlink': 'refused by design (EPERM): a link target means nothing on another device (and could '
               'point outside the drive), so symbolic links are not synchronized',
    'rename_exchange': 'refused by design (EINVAL): renameat2(RENAME_EXCHANGE) would need one atomic '
                       'version changing two paths of possibly two objects; not supported',
    'rename_noreplace': 'refused (EINVAL): renameat2 flags are not supported; plain rename() replaces '
                        'atomically, which is what editors and tools use',
}


def expected_failure(key: str):
    return pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[key])


def new_object(m, name: str = 'Obj'):
    os.mkdir(m / name)
    return m / name


# open descriptors outliving their name ------------------------------------------------------

def test_rename_over_an_open_file_keeps_the_old_content_on_the_open_descriptor(mount):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'target.txt').write_bytes(b'old content')
    (obj / 'new.txt').write_bytes(b'the new content')
    fd = os.open(obj / 'target.txt', os.O_RDONLY)
    try:
        old_inode = os.fstat(fd).st_ino
        os.rename(obj / 'new.txt', obj / 'target.txt')
        assert os.pread(fd, 100, 0) == b'old content'
        assert os.read(fd, 3) == b'old'
        assert os.fstat(fd).st_size == len(b'old content')
        assert os.stat(obj / 'target.txt').st_ino != old_inode
        assert (obj / 'target.txt').read_bytes() == b'the new content'
        assert sorted(os.listdir(obj)) == ['target.txt', 'values.json']
    finally:
        os.close(fd)
    m.remote.wait_files('Obj', {'target.txt': b'the new content'})


def test_unlink_while_open_for_writing_the_descriptor_keeps_working_and_nothing_syncs(mount):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'kept.txt').write_bytes(b'kept')
    fd = os.open(obj / 'scratch.bin', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b'before ')
        os.unlink(obj / 'scratch.bin')
        os.write(fd, b'after unlink')
        os.fsync(fd)
        os.ftruncate(fd, 20)
        assert os.pread(fd, 100, 0) == b'before after unlink\0'
        assert os.fstat(fd).st_size == 20
        assert not (obj / 'scratch.bin').exists()
    finally:
        os.close(fd)
    assert sorted(os.listdir(obj)) == ['kept.txt', 'values.json']
    m.remote.wait_files('Obj', {'kept.txt': b'kept'})


# writes -------------------------------------------------------------------------------------

def test_o_append_from_two_descriptors_never_overwrites(mount):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'log.txt').write_bytes(b'start\n')
    first = os.open(obj / 'log.txt', os.O_WRONLY | os.O_APPEND)
    second = os.open(obj / 'log.txt', os.O_WRONLY | os.O_APPEND)
    expected = b'start\n'
    try:
        for number in range(20):
            line = f'{"first" if number % 2 else "second"} {number}\n'.encode()
            os.write(first if number % 2 else second, line)
            expected += line
        os.lseek(first, 0, os.SEEK_SET)         # seeking does not matter with O_APPEND
        os.write(first, b'end\n')
        expected += b'end\n'
    finally:
        os.close(first)
        os.close(second)
    assert (obj / 'log.txt').read_bytes() == expected
    assert os.stat(obj / 'log.txt').st_size == len(expected)
    m.remote.wait_files('Obj', {'log.txt': expected})


def test_ftruncate_up_reads_zeros_and_down_cuts(mount):
    m = mount('alice')
    obj = new_object(m)
    fd = os.open(obj / 'f.bin', os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b'0123456789')
        os.ftruncate(fd, 4096 + 10)
        assert os.fstat(fd).st_size == 4106
        assert os.pread(fd, 5000, 0) == b'0123456789' + b'\0' * 4096
        os.ftruncate(fd, 4)
        assert os.fstat(fd).st_size == 4
        assert os.pread(fd, 5000, 0) == b'0123'
        os.ftruncate(fd, 8)                     # up again: the cut bytes do not come back
        assert os.pread(fd, 100, 0) == b'0123\0\0\0\0'
        os.ftruncate(fd, 0)
        assert os.pread(fd, 100, 0) == b''
        os.pwrite(fd, b'xy', 0)
    finally:
        os.close(fd)
    assert os.stat(obj / 'f.bin').st_size == 2
    m.remote.wait_files('Obj', {'f.bin': b'xy'})


def test_sparse_writes_read_the_hole_as_zeros(mount):
    m = mount('alice')
    obj = new_object(m)
    far = 5 * 1024 * 1024 + 123
    with open(obj / 'sparse.bin', 'wb') as file:
        file.write(b'head')
        file.seek(far)
        file.write(b'tail')
    assert os.stat(obj / 'sparse.bin').st_size == far + 4
    with open(obj / 'sparse.bin', 'rb') as file:
        assert file.read(4) == b'head'
        hole = file.read(far - 4)
        assert len(hole) == far - 4 and hole.count(0) == len(hole)
        assert file.read() == b'tail'
    fd = os.open(obj / 'sparse.bin', os.O_WRONLY)
    try:                                        # pwrite beyond the end of an existing file
        os.pwrite(fd, b'!', far + 1000)
    finally:
        os.close(fd)
    content = (obj / 'sparse.bin').read_bytes()
    assert len(content) == far + 1001
    assert content[far:] == b'tail' + b'\0' * 996 + b'!'
    m.remote.wait_files('Obj', {'sparse.bin': content})


def test_mtime_and_size_follow_writes(mount):
    m = mount('alice')
    obj = new_object(m)
    path = obj / 'm.txt'
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b'12345')
        assert os.fstat(fd).st_size == 5
        assert os.stat(path).st_size == 5
        first = os.stat(path).st_mtime_ns
        time.sleep(0.05)
        os.write(fd, b'678')
        assert os.fstat(fd).st_size == 8
    finally:
        os.close(fd)
    second = os.stat(path).st_mtime_ns
    assert second > first
    assert os.stat(path).st_size == 8
    assert abs(second / 1e9 - time.time()) < 60
    time.sleep(0.05)
    with open(path, 'r+b') as file:             # a same-size overwrite moves mtime too
        file.write(b'abc')
    third = os.stat(path)
    assert third.st_mtime_ns > second and third.st_size == 8
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    assert os.stat(path).st_mtime_ns == 1_600_000_000_000_000_000
    assert path.read_bytes() == b'abc45678'


# readdir ------------------------------------------------------------------------------------

def test_readdir_during_churn_has_no_duplicates_and_no_gaps(mount):
    m = mount('alice')
    obj = new_object(m)
    stable = {f'stable-{number:03}.txt' for number in range(60)}
    for name in stable:
        (obj / name).write_bytes(name.encode())
    # a file removed while its upload is under way fails that upload; the next sync retries (WARNING)
    m.expect_log(r'is missing|No such file or directory|does not match its declared sha256|sync incomplete')
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn():
        number = 0
        try:
            while not stop.is_set():
                name = obj / f'churn-{number % 40:03}.txt'
                if number % 80 < 40:
                    name.write_bytes(b'x')
                else:
                    name.unlink()
                number += 1
        except BaseException as exc:        # reported by the test thread
            errors.append(exc)

    worker = threading.Thread(target=churn)
    worker.start()
    listings = 0
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            names = [entry.name for entry in os.scandir(obj)]
            assert len(names) == len(set(names)), f'duplicates: {sorted(n for n in names if names.count(n) > 1)}'
            assert stable | {'values.json'} <= set(names), f'missing: {stable - set(names)}'
            assert all(name in stable or name == 'values.json' or name.startswith('churn-') for name in names)
            listings += 1
    finally:
        stop.set()
        worker.join()
    assert not errors, errors
    assert listings > 10
    final = {entry.name: (obj / entry.name).read_bytes() for entry in os.scandir(obj) if entry.name != 'values.json'}
    m.remote.wait_files('Obj', final)           # the churn settles on the server as it ended


# expected failures --------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100


def renameat2(old, new, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@expected_failure('hard_link')
def test_hard_link(mount):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'a.txt').write_bytes(b'a')
    m.expect_log('hard links cannot be synchronized')
    os.link(obj / 'a.txt', obj / 'b.txt')
    assert os.stat(obj / 'b.txt').st_nlink == 2


@expected_failure('symlink')
def test_symlink(mount):
    m = mount('alice')
    obj = new_object(m)
    m.expect_log('symbolic links cannot be synchronized')
    os.symlink('a.txt', obj / 'link')
    assert os.readlink(obj / 'link') == 'a.txt'


@expected_failure('rename_exchange')
def test_rename_exchange(mount):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'a.txt').write_bytes(b'a')
    (obj / 'b.txt').write_bytes(b'b')
    renameat2(obj / 'a.txt', obj / 'b.txt', RENAME_EXCHANGE)
    assert (obj / 'a.txt').read_bytes() == b'b'


@expected_failure('rename_noreplace')
def test_rename_noreplace(mount):
    m = mount('alice')
    obj = new_object(m)
    (obj / 'a.txt').write_bytes(b'a')
    renameat2(obj / 'a.txt', obj / 'c.txt', RENAME_NOREPLACE)
    assert (obj / 'c.txt').read_bytes() == b'a'


def test_the_refusals_have_the_documented_errno(mount):
    """The expected failures above fail the way README says, not by accident."""
    m = mount('alice')
    obj = new_object(m)
    (obj / 'a.txt').write_bytes(b'a')
    (obj / 'b.txt').write_bytes(b'b')
    m.expect_log('hard links cannot be synchronized')
    m.expect_log('symbolic links cannot be synchronized')
    for attempt, code in [(lambda: os.link(obj / 'a.txt', obj / 'h.txt'), errno.EPERM),
                          (lambda: os.symlink('a.txt', obj / 'link'), errno.EPERM),
                          (lambda: renameat2(obj / 'a.txt', obj / 'b.txt', RENAME_EXCHANGE), errno.EINVAL),
                          (lambda: renameat2(obj / 'a.txt', obj / 'c.txt', RENAME_NOREPLACE), errno.EINVAL)]:
        with pytest.raises(OSError) as failure:
            attempt()
        assert failure.value.errno == code
    assert (obj / 'a.txt').read_bytes() == b'a' and (obj / 'b.txt').read_bytes() == b'b'
