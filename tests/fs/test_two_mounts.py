"""Two real mounts on one server: two devices of one user, and two users sharing an object.

Everything is polled with a deadline (never a fixed sleep): a change on one mount reaches the
server after the debounce and the other mount through its long poll, normally within a second or two.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import time

import pytest

from oaio_testing import oaio

PROPAGATION_SECONDS = 15


def wait_for(predicate, timeout: float = PROPAGATION_SECONDS, what: str = 'the condition'):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = predicate()
        except FileNotFoundError as exc:
            result = exc
            if time.monotonic() > deadline:
                pytest.fail(f'{what}: not reached within {timeout} s ({exc})')
        else:
            if result:
                return result
        if time.monotonic() > deadline:
            pytest.fail(f'{what}: not reached within {timeout} s (last: {result!r})')
        time.sleep(0.05)


def read(path) -> bytes | None:
    try:
        with open(path, 'rb') as file:
            return file.read()
    except FileNotFoundError:
        return None


def values(path) -> dict | None:
    text = read(path)
    return json.loads(text) if text is not None else None


def write_values(path, new: dict) -> None:
    with open(path, 'w') as file:
        json.dump(new, file)


def listing(path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# two devices of one user ----------------------------------------------------------------------

def test_a_new_object_and_file_edits_reach_the_other_device(mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    (a / 'notes').mkdir()
    (a / 'notes/a.txt').write_bytes(b'first version\n')
    wait_for(lambda: 'notes' in listing(b.path), what='the new object on B')
    wait_for(lambda: read(b / 'notes/a.txt') == b'first version\n', what='the new file on B')

    (a / 'notes/a.txt').write_bytes(b'second version, longer\n')
    wait_for(lambda: read(b / 'notes/a.txt') == b'second version, longer\n', what='the edit on B')
    # nested folders travel too
    (a / 'notes/sub/deeper').mkdir(parents=True)
    (a / 'notes/sub/deeper/c.txt').write_bytes(b'deep')
    wait_for(lambda: read(b / 'notes/sub/deeper/c.txt') == b'deep', what='the nested file on B')
    assert stat.S_ISDIR(os.stat(b / 'notes/sub').st_mode)


def test_a_same_size_remote_change_is_seen_at_the_next_open(mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    (a / 'doc').mkdir()
    (a / 'doc/same.txt').write_bytes(b'AAAA-1111\n')
    wait_for(lambda: read(b / 'doc/same.txt') == b'AAAA-1111\n', what='the file on B')
    stamp_before = os.getxattr(b / 'doc', 'user.oaio.stamp')
    # fill B's kernel caches (page cache with keep_cache, attributes with their timeout)
    for _ in range(3):
        assert read(b / 'doc/same.txt') == b'AAAA-1111\n'
        os.stat(b / 'doc/same.txt')

    (a / 'doc/same.txt').write_bytes(b'BBBB-2222\n')             # same size
    wait_for(lambda: os.getxattr(b / 'doc', 'user.oaio.stamp') != stamp_before, what='the new version on B')
    # the watcher invalidates right after it shows the new version: well within the attribute
    # timeout (5 s) after the reads above, so without the invalidation the old bytes would come back
    wait_for(lambda: read(b / 'doc/same.txt') == b'BBBB-2222\n', timeout=2, what='the new content at the next open')
    assert os.stat(b / 'doc/same.txt').st_size == 10


def test_remote_deletes_disappear_from_the_other_listing(mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    (a / 'gone').mkdir()
    (a / 'gone/one.txt').write_bytes(b'1')
    (a / 'gone/two.txt').write_bytes(b'2')
    (a / 'stays').mkdir()
    (a / 'stays/keep.txt').write_bytes(b'k')
    wait_for(lambda: listing(b / 'gone') == ['one.txt', 'two.txt', 'values.json'], what='the files on B')
    wait_for(lambda: read(b / 'stays/keep.txt') == b'k', what='the second object on B')
    assert os.path.exists(b / 'gone/one.txt')               # the kernel now caches the entry

    os.unlink(a / 'gone/one.txt')
    wait_for(lambda: listing(b / 'gone') == ['two.txt', 'values.json'], what='the deleted file gone from B')
    wait_for(lambda: not os.path.exists(b / 'gone/one.txt'), timeout=2, what='the cached entry dropped on B')

    os.unlink(a / 'gone/two.txt')
    os.rmdir(a / 'gone')                                    # unregisters the object
    wait_for(lambda: listing(b.path) == ['stays'], what='the deleted object gone from B')
    wait_for(lambda: not os.path.exists(b / 'gone'), timeout=2, what='the cached object entry dropped on B')
    assert read(b / 'stays/keep.txt') == b'k'
    a.remote.wait_gone('gone')


def test_listings_the_kernel_keeps_follow_remote_changes_in_nested_folders(mount):
    """With the extended pyfuse3 the kernel keeps folder listings (cache_readdir): B lists an
    object and a nested folder again and again, A adds, renames and removes files in both; once B
    shows A's version, its listings follow within 2 s — sooner than the 5 s after which the kernel
    would look at the folders' mtimes itself, so only the invalidation does it. B's own changes
    show in its next listing at once."""
    a, b = mount('alice', 'A'), mount('alice', 'B')

    def b_has_the_version_of_a():
        synced = os.getxattr(a / 'tree', 'user.oaio.sync') == b'synced'
        return synced and os.getxattr(b / 'tree', 'user.oaio.stamp') == os.getxattr(a / 'tree', 'user.oaio.stamp')

    (a / 'tree/sub').mkdir(parents=True)
    (a / 'tree/top.txt').write_bytes(b't')
    (a / 'tree/sub/one.txt').write_bytes(b'1')
    wait_for(lambda: listing(b / 'tree/sub') == ['one.txt'], what='the nested file on B')
    for _ in range(3):                                      # kept by the kernel from here on
        assert listing(b / 'tree') == ['sub', 'top.txt', 'values.json']
        assert listing(b / 'tree/sub') == ['one.txt']

    (a / 'tree/sub/two.txt').write_bytes(b'2')
    os.rename(a / 'tree/top.txt', a / 'tree/renamed.txt')
    os.unlink(a / 'tree/sub/one.txt')
    wait_for(b_has_the_version_of_a, what="A's version on B")
    wait_for(lambda: listing(b / 'tree/sub') == ['two.txt'], timeout=2, what='the nested folder on B')
    wait_for(lambda: listing(b / 'tree') == ['renamed.txt', 'sub', 'values.json'], timeout=2,
             what='the object folder on B')

    (b / 'tree/sub/three.txt').write_bytes(b'3')            # through the mount: no waiting
    assert listing(b / 'tree/sub') == ['three.txt', 'two.txt']
    os.rename(b / 'tree/sub/three.txt', b / 'tree/three.txt')
    assert listing(b / 'tree/sub') == ['two.txt']
    assert listing(b / 'tree') == ['renamed.txt', 'sub', 'three.txt', 'values.json']
    wait_for(lambda: listing(a / 'tree') == ['renamed.txt', 'sub', 'three.txt', 'values.json'],
             what="B's move on A")


def test_values_json_edits_propagate_both_ways(mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    (a / 'card').mkdir()
    write_values(a / 'card/values.json', {'_name': 'card', 'colour': 'red', 'size': 3})
    wait_for(lambda: values(b / 'card/values.json') == {'_name': 'card', 'colour': 'red', 'size': 3},
             what='the values on B')
    text = read(b / 'card/values.json').decode()
    assert text == json.dumps({'_name': 'card', 'colour': 'red', 'size': 3}, indent=2, sort_keys=True) + '\n'

    write_values(b / 'card/values.json', {'_name': 'card', 'colour': 'blue', 'size': 3, 'new': [1, 2]})
    wait_for(lambda: values(a / 'card/values.json') == {'_name': 'card', 'colour': 'blue', 'size': 3,
                                                         'new': [1, 2]}, what='B\'s values on A')
    obj = a.remote.wait_object('card', lambda obj: obj['client_values'].get('colour') == 'blue')
    assert obj['client_values']['new'] == [1, 2]


# two users ------------------------------------------------------------------------------------

def expect_eacces(what: str, action) -> None:
    started = time.monotonic()
    with pytest.raises(PermissionError) as raised:
        action()
    assert raised.value.errno == errno.EACCES, f'{what}: {raised.value!r}'
    assert time.monotonic() - started < 2, f'{what}: the refusal took {time.monotonic() - started:.1f} s'


def test_read_only_share_shows_read_only_modes_and_refuses_writes(mount):
    alice = mount('alice', 'laptop')
    bob = mount('bob', 'phone')
    (alice / 'plans').mkdir()
    (alice / 'plans/sub').mkdir()
    (alice / 'plans/f.txt').write_bytes(b'the plan\n')
    (alice / 'plans/sub/g.txt').write_bytes(b'nested\n')
    write_values(alice / 'plans/values.json', {'_name': 'plans', 'budget': 10})
    alice.remote.wait_files('plans', {'f.txt': b'the plan\n', 'sub/g.txt': b'nested\n'})

    shared = oaio('share', str(alice / 'plans/f.txt'), 'bob', '--right', 'r')
    assert shared.returncode == 0, shared.stderr
    access = oaio('access', str(alice / 'plans'))
    assert access.returncode == 0, access.stderr
    assert sorted(line.split() for line in access.stdout.splitlines()) == [['C', 'alice'], ['r', 'bob']]

    wait_for(lambda: read(bob / 'plans/sub/g.txt') == b'nested\n', what='the shared object on bob\'s mount')
    assert read(bob / 'plans/f.txt') == b'the plan\n'
    assert values(bob / 'plans/values.json') == {'_name': 'plans', 'budget': 10}
    assert os.getxattr(bob / 'plans', 'user.oaio.right') == b'r'
    assert os.getxattr(bob / 'plans', 'user.oaio.owner') == b'alice'
    assert mode(bob / 'plans') == 0o555
    assert mode(bob / 'plans/sub') == 0o555
    assert mode(bob / 'plans/f.txt') == 0o444
    assert mode(bob / 'plans/sub/g.txt') == 0o444
    assert mode(bob / 'plans/values.json') == 0o444

    # root bypasses the kernel's permission checks: these EACCES come from the mount itself
    target = bob / 'plans'
    expect_eacces('open for append', lambda: open(target / 'f.txt', 'ab').close())
    expect_eacces('open for write', lambda: os.close(os.open(target / 'f.txt', os.O_WRONLY)))
    expect_eacces('open read-write', lambda: os.close(os.open(target / 'f.txt', os.O_RDWR)))
    expect_eacces('truncate', lambda: os.truncate(target / 'f.txt', 0))
    expect_eacces('create', lambda: os.close(os.open(target / 'new.txt', os.O_WRONLY | os.O_CREAT, 0o644)))
    expect_eacces('create in a folder', lambda: open(target / 'sub/new.txt', 'wb').close())
    expect_eacces('unlink', lambda: os.unlink(target / 'f.txt'))
    expect_eacces('rename', lambda: os.rename(target / 'f.txt', target / 'renamed.txt'))
    expect_eacces('rename into a folder', lambda: os.rename(target / 'f.txt', target / 'sub/f.txt'))
    expect_eacces('mkdir', lambda: os.mkdir(target / 'newdir'))
    expect_eacces('rmdir of a folder', lambda: os.rmdir(target / 'sub'))
    expect_eacces('values.json write', lambda: write_values(target / 'values.json', {'budget': 0}))
    expect_eacces('values.json truncate', lambda: open(target / 'values.json', 'wb').close())
    expect_eacces('rename of the object', lambda: os.rename(target, bob / 'renamed'))
    expect_eacces('touch', lambda: os.utime(target / 'f.txt'))
    expect_eacces('chmod', lambda: os.chmod(target / 'f.txt', 0o666))
    expect_eacces('share by a reader', lambda: os.setxattr(target, 'user.oaio.share', b'bob:C'))
    result = oaio('share', str(target), 'carol', '--right', 'r')
    assert result.returncode == 5 and 'owner' in result.stderr, result

    # nothing changed anywhere
    assert listing(target) == ['f.txt', 'sub', 'values.json']
    assert listing(target / 'sub') == ['g.txt']
    assert read(target / 'f.txt') == b'the plan\n'
    assert values(target / 'values.json') == {'_name': 'plans', 'budget': 10}
    assert read(alice / 'plans/f.txt') == b'the plan\n'
    assert alice.remote.files(alice.remote.by_name('plans')) == {'f.txt': b'the plan\n', 'sub/g.txt': b'nested\n'}
    assert os.getxattr(target, 'user.oaio.sync') == b'synced'
    bob.expect_log(r'read-only|sharing .* failed')


def test_update_share_lets_bob_edit_and_alice_sees_it(mount):
    alice = mount('alice', 'laptop')
    bob = mount('bob', 'phone')
    (alice / 'team').mkdir()
    (alice / 'team/todo.txt').write_bytes(b'- buy milk\n')
    alice.remote.wait_files('team', {'todo.txt': b'- buy milk\n'})
    shared = oaio('share', str(alice / 'team'), 'bob', '--right', 'r')
    assert shared.returncode == 0, shared.stderr
    wait_for(lambda: read(bob / 'team/todo.txt') == b'- buy milk\n', what='the shared object on bob\'s mount')
    assert mode(bob / 'team/todo.txt') & 0o222 == 0
    # test -w, vim's [readonly]: not writable, for root too (the write would be refused)
    for path in ('team', 'team/todo.txt', 'team/values.json'):
        assert os.access(bob / path, os.R_OK) and not os.access(bob / path, os.W_OK), path
    assert os.access(bob.path, os.W_OK)                 # new objects can still be made

    shared = oaio('share', str(alice / 'team'), 'bob', '--right', 'U')
    assert shared.returncode == 0, shared.stderr
    wait_for(lambda: os.getxattr(bob / 'team', 'user.oaio.right') == b'U', what='right U on bob\'s mount')
    wait_for(lambda: mode(bob / 'team/todo.txt') & 0o200, timeout=6, what='the write bit on bob\'s file')
    assert mode(bob / 'team') & 0o200
    for path in ('team', 'team/todo.txt', 'team/values.json'):
        assert os.access(bob / path, os.R_OK | os.W_OK), path

    with open(bob / 'team/todo.txt', 'ab') as file:
        file.write(b'- call bob\n')
    wait_for(lambda: read(alice / 'team/todo.txt') == b'- buy milk\n- call bob\n', what='bob\'s edit on alice\'s mount')
    write_values(bob / 'team/values.json', {'_name': 'team', 'owner_note': 'bob was here'})
    wait_for(lambda: (values(alice / 'team/values.json') or {}).get('owner_note') == 'bob was here',
             what='bob\'s values on alice\'s mount')
    access = oaio('access', str(bob / 'team/todo.txt'))
    assert access.returncode == 0, access.stderr
    assert sorted(line.split() for line in access.stdout.splitlines()) == [['C', 'alice'], ['U', 'bob']]
    # U is no delete right: bob cannot remove the object for everybody
    obj = alice.remote.by_name('team')
    assert obj is not None


# offline on both devices ------------------------------------------------------------------------

CONFLICT = r'^f\.conflict-(A|B)-\d{20}\.txt$'


def test_offline_edits_on_both_devices_converge(mount, server):
    import re
    a, b = mount('alice', 'A'), mount('alice', 'B')
    for m in (a, b):
        m.expect_log(r'unreachable|not reachable|sync incomplete')
    (a / 'doc').mkdir()
    (a / 'doc/f.txt').write_bytes(b'base\n')
    write_values(a / 'doc/values.json', {'_name': 'doc', 'shared': 0})
    wait_for(lambda: read(b / 'doc/f.txt') == b'base\n' and (values(b / 'doc/values.json') or {}).get('shared') == 0,
             what='the object on B')

    server.stop()
    write_values(a / 'doc/values.json', {'_name': 'doc', 'shared': 0, 'from_a': 'A'})
    write_values(b / 'doc/values.json', {'_name': 'doc', 'shared': 0, 'from_b': 'B'})
    (a / 'doc/f.txt').write_bytes(b'edited on A\n')
    (b / 'doc/f.txt').write_bytes(b'edited on B, offline\n')
    for m in (a, b):
        wait_for(lambda: not m.status()['online'] and m.status()['pending'] > 0,
                 what=f'{m.device}: status offline with pending changes')
    # the edits are visible locally meanwhile
    assert read(a / 'doc/f.txt') == b'edited on A\n'
    assert values(b / 'doc/values.json')['from_b'] == 'B'

    server.start()
    merged = {'_name': 'doc', 'shared': 0, 'from_a': 'A', 'from_b': 'B'}

    def converged():
        names_a, names_b = listing(a / 'doc'), listing(b / 'doc')
        if names_a != names_b or not any(re.match(CONFLICT, name) for name in names_a):
            return None
        if any(read(a / 'doc' / name) != read(b / 'doc' / name) for name in names_a):
            return None
        return names_a if values(a / 'doc/values.json') == merged else None
    names = wait_for(converged, timeout=60, what='both devices converged')
    conflicts = [name for name in names if re.match(CONFLICT, name)]
    assert len(conflicts) == 1, names
    assert sorted(names) == sorted(['f.txt', conflicts[0], 'values.json'])
    assert {read(a / 'doc/f.txt'), read(a / 'doc' / conflicts[0])} == {b'edited on A\n', b'edited on B, offline\n'}
    assert values(b / 'doc/values.json') == merged
    for m in (a, b):
        wait_for(lambda: m.status()['online'] and m.status()['pending'] == 0, what=f'{m.device}: synced again')
    a.remote.wait_files('doc', {'f.txt': read(a / 'doc/f.txt'), conflicts[0]: read(a / 'doc' / conflicts[0])})
    server_values = {k: v for k, v in a.remote.by_name('doc')['client_values'].items() if not k.startswith('_')}
    assert server_values == {'shared': 0, 'from_a': 'A', 'from_b': 'B'}
