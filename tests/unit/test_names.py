"""Names in the mount (oaio.fs.names): editor scratch files, and object folder names that are safe
and the same on every device."""
from __future__ import annotations

import pytest

from oaio import protocol as p
from oaio.fs.names import display_name, is_temp_name, is_temp_path, unique_names


@pytest.mark.parametrize('name', ['4913', '.a.txt.swp', '.a.swo', 'a.txt~', '.#a.txt', '#a.txt#',
                                  '.goutputstream-ABC123', '.~lock.a.odt#', '~$report.docx', 'sedAb12Cd',
                                  '.fuse_hidden0000001'])
def test_scratch_files_are_temp_names(name):
    assert is_temp_name(name)


@pytest.mark.parametrize('name', ['a.txt', 'values.json', '4914', 'sed', 'sedAb12Cde', 'notes#', '.swp'])
def test_ordinary_files_are_not(name):
    assert not is_temp_name(name)


def test_a_temp_folder_makes_its_contents_temp():
    assert is_temp_path('dir/.#lock/inside.txt')
    assert not is_temp_path('dir/sub/a.txt')


def test_the_name_comes_from_name_then_single_file_then_root_folder_then_id():
    assert display_name('id1', {p.NAME_KEY: 'Notes', p.FILE_PATHS_KEY: ['a.txt']}) == 'Notes'
    assert display_name('id1', {p.FILE_PATHS_KEY: ['dir/a.txt']}) == 'a.txt'
    assert display_name('id1', {p.FILE_PATHS_KEY: ['a', 'b'], p.ROOT_PATH_KEY: '/home/u/Photos/'}) == 'Photos'
    assert display_name('id1', {p.FILE_PATHS_KEY: ['a', 'b']}) == 'id1'


@pytest.mark.parametrize('bad', ['', '  ', '.', '..', p.VALUES_FILE, '\x00\x01'])
def test_unusable_names_fall_back(bad):
    assert display_name('the-id', {p.NAME_KEY: bad}) == 'the-id'


def test_names_are_made_safe():
    assert display_name('id1', {p.NAME_KEY: 'a/b'}) == 'a\u2044b'
    assert display_name('id1', {p.NAME_KEY: ' tab\tand\nnewline '}) == 'tabandnewline'
    long = display_name('id1', {p.NAME_KEY: 'é' * 200})
    assert len(long.encode()) <= p.MAX_NAME_BYTES - 8 and p.check_name(long + ' (99)')


def test_clashing_names_are_numbered_in_the_order_of_their_ids():
    objects = {'id3': {p.NAME_KEY: 'Same'}, 'id1': {p.NAME_KEY: 'Same'}, 'id2': {p.NAME_KEY: 'Same'},
               'id4': {p.NAME_KEY: 'Other'}}
    assert unique_names(objects) == {'id1': 'Same', 'id2': 'Same (2)', 'id3': 'Same (3)', 'id4': 'Other'}
    assert unique_names(dict(reversed(objects.items()))) == unique_names(objects)     # every device agrees


def test_a_numbered_name_that_exists_already_is_skipped():
    objects = {'a': {p.NAME_KEY: 'X'}, 'b': {p.NAME_KEY: 'X (2)'}, 'c': {p.NAME_KEY: 'X'}}
    names = unique_names(objects)
    assert len(set(names.values())) == 3 and names['a'] == 'X'
