"""Unit and property tests of the three-way merges: values key by key, files path by path."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oaio.client.merge import conflict_name, merge_files, merge_values
from oaio.client.protocol import MAX_NAME_BYTES, check_relative_path

STAMP = '20261125101010123456'
ABSENT = object()


def same(a, b) -> bool:
    """Equal as JSON values: 1, 1.0 and True are three different values."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# merge_values -----------------------------------------------------------------------------------

def test_keys_changed_on_one_side_take_that_side():
    base = {'a': 1, 'b': 2, 'c': 3, 'gone_here': 4, 'gone_there': 5}
    local = {'a': 10, 'b': 2, 'c': 3, 'gone_there': 5, 'new_here': 6}
    remote = {'a': 1, 'b': 20, 'c': 3, 'gone_here': 4, 'new_there': 7}
    merged = merge_values(base, local, remote, local_is_newer=False)
    assert merged.values == {'a': 10, 'b': 20, 'c': 3, 'new_here': 6, 'new_there': 7}
    assert merged.losers == {}


def test_keys_changed_on_both_sides_take_the_newer_and_report_the_older():
    base, local, remote = {'k': 'base'}, {'k': 'mine'}, {'k': 'theirs'}
    assert merge_values(base, local, remote, local_is_newer=True).values == {'k': 'mine'}
    assert merge_values(base, local, remote, local_is_newer=True).losers == {'k': 'theirs'}
    assert merge_values(base, local, remote, local_is_newer=False).values == {'k': 'theirs'}
    assert merge_values(base, local, remote, local_is_newer=False).losers == {'k': 'mine'}


def test_the_same_change_on_both_sides_is_no_conflict():
    merged = merge_values({'k': 1}, {'k': 2, 'n': [1]}, {'k': 2, 'n': [1]}, local_is_newer=True)
    assert (merged.values, merged.losers) == ({'k': 2, 'n': [1]}, {})
    merged = merge_values({'k': 1}, {}, {}, local_is_newer=True)
    assert (merged.values, merged.losers) == ({}, {})


def test_removed_on_one_side_changed_on_the_other():
    base, local, remote = {'k': 1}, {}, {'k': 2}
    newer_removal = merge_values(base, local, remote, local_is_newer=True)
    assert (newer_removal.values, newer_removal.losers) == ({}, {'k': 2})
    older_removal = merge_values(base, local, remote, local_is_newer=False)
    assert (older_removal.values, older_removal.losers) == ({'k': 2}, {'k': None})


def test_added_on_both_sides_with_different_values():
    merged = merge_values({}, {'k': {'x': 1}}, {'k': {'x': 2}}, local_is_newer=False)
    assert (merged.values, merged.losers) == ({'k': {'x': 2}}, {'k': {'x': 1}})


def test_file_paths_are_left_to_merge_files():
    base, local, remote = {'_file_paths': ['a']}, {'_file_paths': ['a', 'b']}, {'_file_paths': ['a', 'c']}
    for newer in (True, False):
        merged = merge_values(base, local, remote, local_is_newer=newer)
        assert (merged.values, merged.losers) == ({'_file_paths': ['a', 'c']}, {})


@pytest.mark.parametrize('was, now', [(1, True), (0, False), (1, 1.0), ([1], [True]), ({'n': 0}, {'n': False})])
def test_a_change_of_the_json_type_is_a_change(was, now):
    # 1 == True == 1.0 in Python, but they are different JSON values: changing one to the other is an edit
    merged = merge_values({'k': was}, {'k': now}, {'k': was, 'other': 'x'}, local_is_newer=False)
    assert same(merged.values['k'], now)
    merged = merge_values({'k': was}, {'k': was, 'other': 'x'}, {'k': now}, local_is_newer=True)
    assert same(merged.values['k'], now)


# merge_files ------------------------------------------------------------------------------------

def test_files_changed_on_one_side():
    base = {'same': 'h0', 'here': 'h1', 'there': 'h2', 'rm_here': 'h3', 'rm_there': 'h4'}
    local = {'same': 'h0', 'here': 'h1x', 'there': 'h2', 'rm_there': 'h4', 'new_here': 'h5'}
    remote = {'same': 'h0', 'here': 'h1', 'there': 'h2x', 'rm_here': 'h3', 'new_there': 'h6'}
    merged = merge_files(base, local, remote, 'dev', STAMP)
    assert merged.paths == ['here', 'new_here', 'new_there', 'same', 'there']
    assert sorted(merged.download) == ['new_there', 'there']
    assert merged.remove == ['rm_there']
    assert merged.conflicts == {}


def test_files_changed_on_both_sides_keep_both():
    path = 'dir/sub/a.txt'
    merged = merge_files({path: 'h0'}, {path: 'mine'}, {path: 'theirs'}, 'phone', STAMP)
    copy = f'dir/sub/a.conflict-phone-{STAMP}.txt'
    assert merged.conflicts == {'dir/sub/a.txt': copy}
    assert merged.download == ['dir/sub/a.txt']
    assert merged.paths == sorted(['dir/sub/a.txt', copy])
    assert merged.remove == []


def test_files_added_on_both_sides():
    same_content = merge_files({}, {'n': 'h'}, {'n': 'h'}, 'dev', STAMP)
    assert (same_content.paths, same_content.download, same_content.conflicts) == (['n'], [], {})
    different = merge_files({}, {'n': 'mine'}, {'n': 'theirs'}, 'dev', STAMP)
    assert different.conflicts == {'n': f'n.conflict-dev-{STAMP}'} and different.download == ['n']


def test_a_removal_never_destroys_an_edit():
    removed_here = merge_files({'f': 'h0'}, {}, {'f': 'theirs'}, 'dev', STAMP)
    assert (removed_here.paths, removed_here.download, removed_here.remove) == (['f'], ['f'], [])
    removed_there = merge_files({'f': 'h0'}, {'f': 'mine'}, {}, 'dev', STAMP)
    assert (removed_there.paths, removed_there.download, removed_there.remove) == (['f'], [], [])
    removed_both = merge_files({'f': 'h0'}, {}, {}, 'dev', STAMP)
    assert (removed_both.paths, removed_both.download, removed_both.remove) == ([], [], [])


# conflict_name ----------------------------------------------------------------------------------

@pytest.mark.parametrize('path, device, expected', [
    ('a.txt', 'dev', f'a.conflict-dev-{STAMP}.txt'),
    ('dir/sub/a.txt', 'dev', f'dir/sub/a.conflict-dev-{STAMP}.txt'),
    ('archive.tar.gz', 'dev', f'archive.tar.conflict-dev-{STAMP}.gz'),
    ('Makefile', 'dev', f'Makefile.conflict-dev-{STAMP}'),
    ('.bashrc', 'dev', f'.bashrc.conflict-dev-{STAMP}'),
    ('.config/.hidden', 'dev', f'.config/.hidden.conflict-dev-{STAMP}'),
    ('dir.d/file', 'dev', f'dir.d/file.conflict-dev-{STAMP}'),
    ('.env.local', 'dev', f'.env.conflict-dev-{STAMP}.local'),
    ('a.txt', 'my phone/2:x', f'a.conflict-my_phone_2_x-{STAMP}.txt'),
    ('a.txt', '', f'a.conflict-device-{STAMP}.txt'),
    ('a.txt', 'd' * 100, f'a.conflict-{"d" * 40}-{STAMP}.txt'),
])
def test_conflict_name(path, device, expected):
    assert conflict_name(path, device, STAMP) == expected
    assert check_relative_path(expected)


@pytest.mark.parametrize('name', ['n' * 250 + '.txt', 'ü' * 120 + '.md', 'x' * 255, 'long.' + 'e' * 240],
                         ids=['long-stem', 'long-utf8-stem', 'no-ext', 'long-ext'])
def test_conflict_name_of_a_long_name_is_a_valid_name(name):
    copy = conflict_name('dir/' + name, 'phone-of-alice', STAMP)
    assert check_relative_path(copy)
    assert copy.startswith('dir/') and f'.conflict-phone-of-alice-{STAMP}' in copy
    assert len(copy.split('/')[-1].encode()) <= MAX_NAME_BYTES
    assert copy != conflict_name('dir/' + name, 'phone-of-bob', STAMP)


# properties -------------------------------------------------------------------------------------

KEYS = st.sampled_from(['a', 'b', 'c', 'd', '_name'])
VALUES = st.sampled_from([None, 0, 1, 1.0, True, False, '', 'x', 'y', [], [1], {'n': 1}])
VALUE_DICTS = st.dictionaries(KEYS, VALUES, max_size=5)


@settings(max_examples=500, deadline=None)
@given(base=VALUE_DICTS, local=VALUE_DICTS, remote=VALUE_DICTS, local_is_newer=st.booleans())
def test_merge_values_properties(base, local, remote, local_is_newer):
    merged = merge_values(base, local, remote, local_is_newer)
    mirrored = merge_values(base, remote, local, not local_is_newer)
    assert merged.values == mirrored.values and all(
        same(merged.values[key], mirrored.values[key]) for key in merged.values)     # the same on both devices
    for key in set(base) | set(local) | set(remote):
        was, mine, theirs = (side.get(key, ABSENT) for side in (base, local, remote))
        result = merged.values.get(key, ABSENT)
        if same(mine, was) and same(theirs, was):
            assert same(result, was), key                                   # unchanged: keeps the base
        elif same(mine, was) or same(mine, theirs):
            assert same(result, theirs), key                                # changed there only
        elif same(theirs, was):
            assert same(result, mine), key                                  # changed here only
        else:                                                               # changed on both sides
            newer, older = (mine, theirs) if local_is_newer else (theirs, mine)
            assert same(result, newer), key
            assert same(merged.losers[key], None if older is ABSENT else older), key
        if key not in merged.losers:
            continue
        assert not same(mine, was) and not same(theirs, was) and not same(mine, theirs)


PATHS = st.sampled_from(['a.txt', 'b', '.rc', 'd/e.txt', 'd/f/g.tar.gz'])
MANIFESTS = st.dictionaries(PATHS, st.sampled_from(['h1', 'h2', 'h3']), max_size=5)


@settings(max_examples=500, deadline=None)
@given(base=MANIFESTS, local=MANIFESTS, remote=MANIFESTS)
def test_merge_files_loses_no_content(base, local, remote):
    merged = merge_files(base, local, remote, 'dev', STAMP)
    assert merged.paths == sorted(set(merged.paths))
    assert set(merged.download) <= set(remote) and set(merged.remove) <= set(local) - set(merged.paths)
    copies = {copy: original for original, copy in merged.conflicts.items()}
    assert set(copies).isdisjoint(set(base) | set(local) | set(remote))
    final = {}                                  # what each merged path holds after the sync applied it
    for path in merged.paths:
        if path in copies:
            final[path] = local[copies[path]]
        elif path in merged.download:
            final[path] = remote[path]
        else:
            assert path in local, path          # neither downloaded nor a local file: it would be missing
            final[path] = local[path]
    assert set(local) <= set(final) | set(merged.remove)                    # no local file left behind unlisted
    for path in set(base) | set(local) | set(remote):
        was, mine, theirs = base.get(path), local.get(path), remote.get(path)
        if mine == was == theirs:
            assert final.get(path) == was, path
        for content in (mine, theirs):          # every change, on either side, survives somewhere
            if content is not None and content != was:
                assert content in (final.get(path), final.get(merged.conflicts.get(path))), path
        if mine != was and theirs == was:
            assert final.get(path) == mine, path                            # a local removal stays removed
        if theirs != was and mine == was:
            assert final.get(path) == theirs, path
