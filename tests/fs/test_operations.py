"""Every filesystem operation on a real mount, checked on the mount and on the server."""
from __future__ import annotations

import errno
import json
import os
import random
import stat
import subprocess
import threading
import urllib.parse
from datetime import datetime, timezone

import pytest


def now_stamp() -> str:
    return datetime.now(timezone.utc).strftime('%Y%m%d%H%M%S%f')


def register(api, oaio_id: str, values: dict, files: dict[str, bytes] | None = None) -> dict:
    """Register an object directly on the server (as another client would), files staged first."""
    stamp = now_stamp()
    files = files or {}
    for path, content in files.items():
        answer = api.request('put', f'files/{urllib.parse.quote(oaio_id, safe="")}/{stamp}/{urllib.parse.quote(path)}',
                             data=content)
        assert answer.status_code == 201, answer.text
    values = {**values, '_file_paths': sorted(files)} if files else values
    answer = api.post('register/', json={
        'oaio_id': oaio_id, 'client_stamp': stamp, 'server_stamp': '', 'client_values': values, 'server_values': {},
        'csh_id': '', 'username': api.username, 'device_id': 'other', 'app_id': 'tests', 'csh_access_right': 'C'})
    assert answer.ok, answer.text
    return answer.json()


def new_object(m, name: str) -> dict:
    """mkdir an object directory on the mount; return its head once the server has it."""
    os.mkdir(m / name)
    return m.remote.wait_object(name)


def oserror(function, *args) -> int:
    with pytest.raises(OSError) as failure:
        function(*args)
    return failure.value.errno


# listing and objects ----------------------------------------------------------------------

def test_objects_of_the_server_are_listed_by_name(mount, api):
    alice = api('alice')
    register(alice, 'notes-id', {'_name': 'Notes', 'text': 'hello'})
    register(alice, 'photo-id', {}, {'photo.jpg': b'\xff\xd8jpeg'})
    register(alice, 'bare-id', {'x': 1})
    register(alice, 'tree-id', {'_name': 'Tree'}, {'a.txt': b'A', 'sub/b.txt': b'B'})
    m = mount('alice')

    assert sorted(os.listdir(m.path)) == ['Notes', 'Tree', 'bare-id', 'photo.jpg']
    assert sorted(os.listdir(m / 'Notes')) == ['values.json']
    assert json.loads((m / 'Notes/values.json').read_text()) == {'_name': 'Notes', 'text': 'hello'}
    assert (m / 'photo.jpg/photo.jpg').read_bytes() == b'\xff\xd8jpeg'
    assert sorted(os.listdir(m / 'Tree')) == ['a.txt', 'sub', 'values.json']
    assert (m / 'Tree/sub/b.txt').read_bytes() == b'B'
    assert stat.S_ISDIR(os.stat(m / 'Tree/sub').st_mode)
    assert os.stat(m / 'Tree/a.txt').st_size == 1
    assert json.loads((m / 'bare-id/values.json').read_text()) == {'x': 1}


def test_mkdir_at_the_root_registers_an_object_and_files_attach_to_it(mount):
    m = mount('alice')
    obj = new_object(m, 'Notes')
    assert obj['client_values'] == {'_name': 'Notes', '_file_paths': []} or obj['client_values'] == {'_name': 'Notes'}
    assert obj['csh_access_right'] == 'C'
    assert os.listdir(m.path) == ['Notes']
    assert (m / 'Notes/values.json').read_text() == '{\n  "_name": "Notes"\n}\n'

    (m / 'Notes/a.txt').write_text('first file\n')
    os.mkdir(m / 'Notes/sub')
    (m / 'Notes/sub/b.bin').write_bytes(bytes(range(256)) * 40)
    obj = m.remote.wait_files('Notes', {'a.txt': b'first file\n', 'sub/b.bin': bytes(range(256)) * 40})
    assert sorted(obj['client_values']['_file_paths']) == ['a.txt', 'sub/b.bin']
    assert len(m.remote.objects()) == 1


def test_rmdir_of_an_object_unregisters_it(mount):
    m = mount('alice')
    new_object(m, 'Gone')
    new_object(m, 'Stays')
    os.rmdir(m / 'Gone')
    assert os.listdir(m.path) == ['Stays']
    m.remote.wait_gone('Gone')
    assert m.remote.by_name('Stays') is not None

    (m / 'Stays/file').write_text('x')
    assert oserror(os.rmdir, m / 'Stays') == errno.ENOTEMPTY
    os.unlink(m / 'Stays/file')
    os.rmdir(m / 'Stays')
    m.remote.wait_gone('Stays')
    assert os.listdir(m.path) == []


def test_rename_of_an_object_directory_changes_its_name(mount):
    m = mount('alice')
    oaio_id = new_object(m, 'Old name')['oaio_id']
    (m / 'Old name/keep.txt').write_text('kept')
    m.remote.wait_files('Old name', {'keep.txt': b'kept'})

    os.rename(m / 'Old name', m / 'New name')
    assert os.listdir(m.path) == ['New name']
    assert (m / 'New name/keep.txt').read_text() == 'kept'
    assert json.loads((m / 'New name/values.json').read_text())['_name'] == 'New name'
    obj = m.remote.wait_object('New name')
    assert obj['oaio_id'] == oaio_id
    assert m.remote.files(obj) == {'keep.txt': b'kept'}
    assert m.remote.by_name('Old name') is None

    new_object(m, 'Other')
    assert oserror(os.rename, m / 'New name', m / 'Other') in (errno.EEXIST, errno.ENOTEMPTY)
    assert oserror(os.rename, m / 'New name', m / 'Other/inside') == errno.EPERM


def test_plain_files_and_links_are_refused(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    (m / 'Obj/target').write_text('t')
    assert oserror(open, m / 'plain.txt', 'w') == errno.EPERM
    assert oserror(os.symlink, 'target', m / 'Obj/link') == errno.EPERM
    assert oserror(os.symlink, 'Obj', m / 'link') == errno.EPERM
    assert oserror(os.link, m / 'Obj/target', m / 'Obj/hard') == errno.EPERM
    assert sorted(os.listdir(m / 'Obj')) == ['target', 'values.json']
    assert os.listdir(m.path) == ['Obj']
    assert 'only directories can be made at the top of the mount' in m.log()


# files -------------------------------------------------------------------------------------

def test_write_at_random_offsets_append_and_truncate(mount):
    m = mount('alice')
    new_object(m, 'Data')
    path = m / 'Data/blob.bin'
    rng = random.Random(4)
    model = bytearray(rng.randbytes(100_000))
    path.write_bytes(model)
    with open(path, 'r+b') as file:
        for _ in range(200):
            offset = rng.randrange(0, 120_000)
            data = rng.randbytes(rng.randrange(1, 5000))
            if offset > len(model):
                model.extend(b'\0' * (offset - len(model)))
            model[offset:offset + len(data)] = data
            file.seek(offset)
            file.write(data)
    assert path.read_bytes() == model
    assert os.stat(path).st_size == len(model)

    with open(path, 'ab') as file:
        file.write(b'appended')
    model += b'appended'
    assert path.read_bytes() == model

    os.truncate(path, len(model) + 10_000)          # up: zeros
    model += b'\0' * 10_000
    assert path.read_bytes() == model
    with open(path, 'r+b') as file:                  # down, through an open file (ftruncate)
        file.truncate(1234)
    del model[1234:]
    assert os.stat(path).st_size == 1234
    assert path.read_bytes() == model
    m.remote.wait_files('Data', {'blob.bin': bytes(model)})

    with open(path, 'wb'):                           # O_TRUNC to nothing
        pass
    assert path.read_bytes() == b''
    m.remote.wait_files('Data', {'blob.bin': b''})


def test_rename_within_and_between_directories(mount):
    m = mount('alice')
    new_object(m, 'One')
    new_object(m, 'Two')
    (m / 'One/a.txt').write_text('A')
    os.makedirs(m / 'One/dir/deeper')
    (m / 'One/dir/deeper/d.txt').write_text('D')
    m.remote.wait_files('One', {'a.txt': b'A', 'dir/deeper/d.txt': b'D'})

    os.rename(m / 'One/a.txt', m / 'One/b.txt')                     # same directory
    os.rename(m / 'One/b.txt', m / 'One/dir/b.txt')                 # into a subdirectory
    os.rename(m / 'One/dir/deeper', m / 'One/moved')                # a directory with a file
    assert sorted(os.listdir(m / 'One')) == ['dir', 'moved', 'values.json']
    assert (m / 'One/dir/b.txt').read_text() == 'A'
    assert (m / 'One/moved/d.txt').read_text() == 'D'
    m.remote.wait_files('One', {'dir/b.txt': b'A', 'moved/d.txt': b'D'})

    os.rename(m / 'One/moved/d.txt', m / 'Two/d.txt')               # into another object
    assert os.listdir(m / 'One/moved') == []
    assert (m / 'Two/d.txt').read_text() == 'D'
    m.remote.wait_files('One', {'dir/b.txt': b'A'})
    m.remote.wait_files('Two', {'d.txt': b'D'})


def test_rename_over_an_existing_file_is_atomic(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    target = m / 'Obj/target.txt'
    target.write_text('version 0\n' * 100)
    contents = {('version %d\n' % n) * 100 for n in range(31)}
    with open(target) as old:
        stop, seen, failures = threading.Event(), set(), []

        def reader():
            while not stop.is_set():
                try:
                    seen.add(target.read_text())
                except OSError as exc:
                    failures.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for number in range(1, 31):
                (m / 'Obj/.target.new').write_text(('version %d\n' % number) * 100)
                os.replace(m / 'Obj/.target.new', target)
        finally:
            stop.set()
            thread.join()
        assert old.read() == 'version 0\n' * 100           # an open file keeps the content it had
    assert not failures, failures
    assert seen <= contents, 'a reader saw a partial file'
    assert target.read_text() == 'version 30\n' * 100
    assert sorted(os.listdir(m / 'Obj')) == ['target.txt', 'values.json']
    m.remote.wait_files('Obj', {'target.txt': b'version 30\n' * 100})


def test_unlink_also_while_open(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    (m / 'Obj/keep.txt').write_text('keep')
    (m / 'Obj/gone.txt').write_text('gone')
    (m / 'Obj/open.txt').write_text('still readable')
    m.remote.wait_files('Obj', {'keep.txt': b'keep', 'gone.txt': b'gone', 'open.txt': b'still readable'})

    os.unlink(m / 'Obj/gone.txt')
    fd = os.open(m / 'Obj/open.txt', os.O_RDONLY)
    try:
        os.unlink(m / 'Obj/open.txt')
        assert sorted(os.listdir(m / 'Obj')) == ['keep.txt', 'values.json']
        assert not (m / 'Obj/open.txt').exists()
        assert os.pread(fd, 100, 0) == b'still readable'
        assert os.fstat(fd).st_size == len(b'still readable')
        assert os.fstat(fd).st_nlink == 0

        (m / 'Obj/open.txt').write_text('a new file of the same name')     # a new inode, not the open one
        assert os.stat(m / 'Obj/open.txt').st_ino != os.fstat(fd).st_ino
        assert os.pread(fd, 100, 0) == b'still readable'
        assert (m / 'Obj/open.txt').read_text() == 'a new file of the same name'
        os.unlink(m / 'Obj/open.txt')
    finally:
        os.close(fd)
    assert oserror(os.unlink, m / 'Obj/open.txt') == errno.ENOENT
    m.remote.wait_files('Obj', {'keep.txt': b'keep'})

    with open(m / 'Obj/written.txt', 'w+') as file:     # written and truncated after the unlink
        os.unlink(m / 'Obj/written.txt')
        file.write('written after unlink')
        file.flush()
        file.seek(0)
        assert file.read() == 'written after unlink'
        file.truncate(7)
        assert os.fstat(file.fileno()).st_size == 7
    assert sorted(os.listdir(m / 'Obj')) == ['keep.txt', 'values.json']


def test_mkdir_and_rmdir_inside_an_object(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    os.mkdir(m / 'Obj/sub')
    os.mkdir(m / 'Obj/sub/deeper')
    assert stat.S_ISDIR(os.stat(m / 'Obj/sub/deeper').st_mode)
    assert oserror(os.mkdir, m / 'Obj/sub') == errno.EEXIST
    (m / 'Obj/sub/deeper/f.txt').write_text('f')
    m.remote.wait_files('Obj', {'sub/deeper/f.txt': b'f'})
    assert oserror(os.rmdir, m / 'Obj/sub') == errno.ENOTEMPTY
    os.unlink(m / 'Obj/sub/deeper/f.txt')
    os.rmdir(m / 'Obj/sub/deeper')
    os.rmdir(m / 'Obj/sub')
    assert os.listdir(m / 'Obj') == ['values.json']
    assert oserror(os.rmdir, m / 'Obj/values.json') == errno.ENOTDIR
    m.remote.wait_files('Obj', {})


def test_statfs_utimens_and_chmod(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    path = m / 'Obj/f.txt'
    path.write_text('content')
    vfs = os.statvfs(m.path)
    assert vfs.f_bsize > 0 and vfs.f_blocks > 0 and vfs.f_namemax == 255

    os.utime(path, ns=(1_600_000_000_000_000_000, 1_500_000_000_123_456_789))
    assert os.stat(path).st_mtime_ns == 1_500_000_000_123_456_789
    assert os.stat(path).st_atime_ns == 1_600_000_000_000_000_000
    os.utime(m / 'Obj/values.json')             # touch values.json: harmless

    os.chmod(path, 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.access(path, os.R_OK | os.W_OK) and not os.access(path, os.X_OK)
    os.chmod(path, 0o755)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert os.access(path, os.R_OK | os.W_OK | os.X_OK)
    assert path.read_text() == 'content'
    script = m / 'Obj/run.sh'
    script.write_text('#!/bin/sh\necho ran\n')
    with pytest.raises(PermissionError):                # no x bit: the kernel refuses exec, also to root
        subprocess.run([str(script)], check=True)
    os.chmod(script, 0o700)
    assert subprocess.run([str(script)], capture_output=True, text=True, check=True).stdout == 'ran\n'
    m.remote.wait_files('Obj', {'f.txt': b'content', 'run.sh': b'#!/bin/sh\necho ran\n'})

    m.restart()                                 # kept locally, over a remount
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755
    assert os.stat(path).st_mtime_ns == 1_500_000_000_123_456_789


def test_extended_attributes(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    (m / 'Obj/f.txt').write_text('x')
    obj = m.remote.wait_files('Obj', {'f.txt': b'x'})

    def synced(path):
        return os.getxattr(path, 'user.oaio.sync') == b'synced' and \
            os.getxattr(path, 'user.oaio.stamp').decode() == obj['client_stamp']
    for path in (m / 'Obj', m / 'Obj/f.txt', m / 'Obj/values.json'):
        assert set(os.listxattr(path)) >= {'user.oaio.id', 'user.oaio.stamp', 'user.oaio.right', 'user.oaio.owner',
                                           'user.oaio.sync'}
        assert os.getxattr(path, 'user.oaio.id').decode() == obj['oaio_id']
        assert os.getxattr(path, 'user.oaio.right') == b'C'
        assert os.getxattr(path, 'user.oaio.owner') == b'alice'
        m.wait_for(lambda: synced(path), what=f'{path} synced at the server stamp')
        assert oserror(os.getxattr, path, 'user.oaio.nothing') == errno.ENODATA
    assert oserror(os.setxattr, m / 'Obj/f.txt', 'user.other', b'v') == errno.ENOTSUP

    root = json.loads(os.getxattr(m.path, 'user.oaio.status'))
    assert root['user'] == 'alice' and root['objects'] == 1


def test_oaio_status_json(mount):
    m = mount('alice')
    new_object(m, 'Obj')

    def settled():
        status = m.status()
        return status if status['pending'] == 0 and status['last_sync'] else None
    status = m.wait_for(settled, what='status: nothing pending')
    assert status['online'] is True
    assert status['objects'] == 1
    assert status['user'] == 'alice'
    assert status['conflicts'] == 0 and status['errors'] == 0


def test_inode_numbers_are_stable(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    os.mkdir(m / 'Obj/sub')
    (m / 'Obj/sub/f.txt').write_text('x')
    paths = [m / 'Obj', m / 'Obj/values.json', m / 'Obj/sub', m / 'Obj/sub/f.txt']
    first = [os.stat(path).st_ino for path in paths]
    assert len(set(first)) == len(first)
    assert [os.stat(path).st_ino for path in paths] == first
    listed = {entry.name: entry.inode() for entry in os.scandir(m / 'Obj')}
    assert listed == {'values.json': first[1], 'sub': first[2]}
    m.remote.wait_files('Obj', {'sub/f.txt': b'x'})

    m.restart()
    assert [os.stat(path).st_ino for path in paths] == first


# values.json -------------------------------------------------------------------------------

def test_values_json_is_pretty_and_a_valid_write_updates_the_object(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    values = m / 'Obj/values.json'
    values.write_text('{"zeta": [1, 2], "alpha": {"y": true, "x": null}, "_name": "Obj", "text": "Grüße"}')
    expected = {'_name': 'Obj', 'alpha': {'x': None, 'y': True}, 'text': 'Grüße', 'zeta': [1, 2]}
    assert values.read_text() == json.dumps(expected, indent=2, sort_keys=True, ensure_ascii=False) + '\n'
    assert os.stat(values).st_size == len(values.read_bytes())
    obj = m.remote.wait_object('Obj', lambda obj: obj['client_values'].get('zeta') == [1, 2])
    assert {k: v for k, v in obj['client_values'].items() if k != '_file_paths'} == expected


def test_values_json_keeps_the_file_list(mount):
    m = mount('alice')
    new_object(m, 'Obj')
    (m / 'Obj/f.txt').write_text('x')
    m.remote.wait_files('Obj', {'f.txt': b'x'})
    (m / 'Obj/values.json').write_text('{"_name": "Obj", "_file_paths": [], "k": 1}')
    assert json.loads((m / 'Obj/values.json').read_text()) == {'_name': 'Obj', 'k': 1}
    obj = m.remote.wait_object('Obj', lambda obj: obj['client_values'].get('k') == 1)
    assert obj['client_values']['_file_paths'] == ['f.txt']
    assert m.remote.files(obj) == {'f.txt': b'x'}


@pytest.mark.parametrize('text', ['{"k": 1,', 'not json', '[1, 2]', '{"_name": 5}', '\xff'])
def test_invalid_values_json_fails_close_and_keeps_the_values(mount, text):
    m = mount('alice')
    m.expect_log(r'values\.json: not saved, the previous values stay')
    new_object(m, 'Obj')
    values = m / 'Obj/values.json'
    values.write_text('{"_name": "Obj", "k": "good"}')
    good = m.remote.wait_object('Obj', lambda obj: obj['client_values'].get('k') == 'good')
    before = values.read_text()

    file = open(values, 'w', encoding='latin-1')
    file.write(text)
    assert oserror(file.close) == errno.EINVAL
    assert values.read_text() == before
    assert 'Obj/values.json: not saved, the previous values stay' in m.log()

    fd = os.open(values, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode('latin-1'))
        assert oserror(os.fsync, fd) == errno.EINVAL
    finally:
        assert oserror(os.close, fd) == errno.EINVAL
    assert values.read_text() == before

    (m / 'Obj/marker').write_text('m')             # a later version: still the good values
    obj = m.remote.wait_files('Obj', {'marker': b'm'})
    assert obj['client_values']['k'] == 'good'
    assert {k: v for k, v in obj['client_values'].items() if k != '_file_paths'} == \
        {k: v for k, v in good['client_values'].items() if k != '_file_paths'}
