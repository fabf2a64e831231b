"""Inode numbers: stable (derived from the object id and path), with the kernel's lookup counts."""
from __future__ import annotations

import hashlib
from typing import NamedTuple

import pyfuse3

ROOT_INODE = pyfuse3.ROOT_INODE


class Node(NamedTuple):
    """What an inode stands for: the root, an object directory, its values.json, or a path inside.
    A named tuple, not a dataclass: every request hashes and compares nodes (the inode table's
    keys), and a tuple does that in C, several times faster."""

    kind: str                   # 'root' | 'object' | 'values' | 'path'
    oaio_id: str = ''
    path: str = ''              # relative path inside the object (kind 'path')


ROOT = Node('root')


def _derived_inode(node: Node) -> int:
    digest = hashlib.blake2b(f'{node.kind}\0{node.oaio_id}\0{node.path}'.encode('utf-8', 'surrogateescape'),
                             digest_size=8).digest()
    return (int.from_bytes(digest, 'big') & (2 ** 63 - 1)) | 2       # never 0 or the root's 1


class InodeTable:
    """Maps nodes to inode numbers and back. A node keeps its number for as long as the mount
    runs and across remounts (the number is a hash of the node); lookup counts are released only
    in ``forget``."""

    def __init__(self):
        self._nodes: dict[int, Node] = {ROOT_INODE: ROOT}
        self._inodes: dict[Node, int] = {ROOT: ROOT_INODE}
        self._lookups: dict[int, int] = {}

    def inode(self, node: Node) -> int:
        """The inode number of ``node`` (assigned on first use)."""
        inode = self._inodes.get(node)
        if inode is None:
            inode = _derived_inode(node)
            while inode in self._nodes:             # a hash collision: probe the next number
                inode = (inode + 1) & (2 ** 63 - 1) | 2
            self._nodes[inode] = node
            self._inodes[node] = inode
        return inode

    def node(self, inode: int) -> Node | None:
        return self._nodes.get(inode)

    def lookups(self, node: Node) -> int:
        """How many lookups of ``node``'s inode the kernel holds (0: it does not know the inode)."""
        inode = self._inodes.get(node)
        return self._lookups.get(inode, 0) if inode is not None else 0

    def detach(self, node: Node) -> int | None:
        """``node``'s name is gone (unlinked, renamed over). If the kernel still knows its inode, the
        inode lives on as a 'gone' node until forgotten (returned); the name gets a fresh inode."""
        inode = self._inodes.pop(node, None)
        if inode is None:
            return None
        if not self._lookups.get(inode):
            del self._nodes[inode]
            return None
        gone = Node('gone', path=str(inode))
        self._nodes[inode] = gone
        self._inodes[gone] = inode
        return inode

    def looked_up(self, inode: int) -> None:
        self._lookups[inode] = self._lookups.get(inode, 0) + 1

    def forget(self, inode: int, count: int) -> None:
        left = self._lookups.get(inode, 0) - count
        if left > 0:
            self._lookups[inode] = left
            return
        self._lookups.pop(inode, None)
        node = self._nodes.get(inode)
        if node is not None and node is not ROOT:
            del self._nodes[inode]
            if self._inodes.get(node) == inode:
                del self._inodes[node]

    def rename(self, old: Node, new: Node) -> None:
        """The kernel moved ``old``'s inode (and everything below it) to ``new``: follow it."""
        moves = [(node, inode) for node, inode in self._inodes.items()
                 if node == old or (old.kind == 'path' and node.kind == 'path' and node.oaio_id == old.oaio_id
                                    and node.path.startswith(old.path + '/'))]
        for node, inode in moves:
            moved = new if node == old else Node('path', new.oaio_id, new.path + node.path[len(old.path):])
            self._inodes.pop(node)
            self.detach(moved)                  # renamed over: that inode lives on unnamed until forgotten
            self._inodes[moved] = inode
            self._nodes[inode] = moved

    def known(self, oaio_id: str) -> list[tuple[int, Node]]:
        """The inodes of one object that the kernel may cache."""
        return [(inode, node) for inode, node in self._nodes.items() if node.oaio_id == oaio_id]
