"""The inode table (oaio.fs.inodes): stable numbers, lookup counts released only in forget, names
that go away while the kernel knows them, renames of whole subtrees."""
from __future__ import annotations

from oaio.fs.inodes import ROOT, ROOT_INODE, InodeTable, Node

OBJ = Node('object', 'id1')
FILE = Node('path', 'id1', 'dir/a.txt')


def test_the_root_is_inode_1_and_is_never_forgotten():
    table = InodeTable()
    assert table.inode(ROOT) == ROOT_INODE == 1
    table.looked_up(ROOT_INODE)
    table.forget(ROOT_INODE, 1)
    assert table.node(ROOT_INODE) == ROOT


def test_numbers_are_derived_from_the_node_so_they_survive_a_remount():
    first, second = InodeTable(), InodeTable()
    assert first.inode(FILE) == second.inode(FILE) == first.inode(FILE)
    assert first.inode(FILE) not in (0, 1)
    assert first.inode(FILE) != first.inode(Node('path', 'id1', 'dir/b.txt'))
    assert first.node(first.inode(OBJ)) == OBJ


def test_lookups_count_up_and_forget_releases_them():
    table = InodeTable()
    inode = table.inode(FILE)
    table.looked_up(inode)
    table.looked_up(inode)
    assert table.lookups(FILE) == 2
    table.forget(inode, 1)
    assert table.lookups(FILE) == 1 and table.node(inode) == FILE
    table.forget(inode, 1)
    assert table.lookups(FILE) == 0 and table.node(inode) is None


def test_a_detached_name_nobody_knows_goes_at_once():
    table = InodeTable()
    inode = table.inode(FILE)
    assert table.detach(FILE) is None
    assert table.node(inode) is None
    assert table.detach(FILE) is None


def test_a_detached_name_the_kernel_knows_lives_on_until_forgotten():
    table = InodeTable()
    inode = table.inode(FILE)
    table.looked_up(inode)
    assert table.detach(FILE) == inode
    assert table.node(inode).kind == 'gone'
    fresh = table.inode(FILE)                   # the name gets a new inode: a new file of that name
    assert fresh != inode and table.node(fresh) == FILE
    table.forget(inode, 1)
    assert table.node(inode) is None and table.node(fresh) == FILE


def test_a_rename_moves_the_subtree_and_keeps_the_numbers():
    table = InodeTable()
    folder = Node('path', 'id1', 'dir')
    numbers = {node: table.inode(node) for node in (folder, FILE, Node('path', 'id1', 'dirty'))}
    table.rename(folder, Node('path', 'id2', 'moved'))
    assert table.node(numbers[folder]) == Node('path', 'id2', 'moved')
    assert table.node(numbers[FILE]) == Node('path', 'id2', 'moved/a.txt')
    assert table.node(numbers[Node('path', 'id1', 'dirty')]) == Node('path', 'id1', 'dirty')   # a prefix, not a child


def test_a_rename_over_a_known_file_leaves_that_inode_unnamed():
    table = InodeTable()
    target = Node('path', 'id1', 'b.txt')
    source = Node('path', 'id1', 'a.txt')
    over, moved = table.inode(target), table.inode(source)
    table.looked_up(over)
    table.rename(source, target)
    assert table.node(moved) == target and table.inode(target) == moved
    assert table.node(over).kind == 'gone'


def test_known_lists_the_inodes_of_one_object():
    table = InodeTable()
    for node in (OBJ, FILE, Node('values', 'id1'), Node('object', 'id2')):
        table.inode(node)
    assert {node for _, node in table.known('id1')} == {OBJ, FILE, Node('values', 'id1')}
