"""The content engine through two real mounts (issue 11's cases at test sizes: correctness, not
time): a tree of many small files arrives whole on the other device; an edit in the middle of a big
file and an append store and send only the chunks around them; identical content in two objects is
stored once. The other device checks every result byte for byte."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from oaio_testing import file_digest, wait_for

MiB = 1024 * 1024


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (the object's folder, values.json left out) by relative path."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob('*'))
            if path.is_file() and path.name != 'values.json'}


def stored_bytes(server) -> int:
    """Bytes in the server's chunk store now."""
    return sum(path.stat().st_size for path in (server.data / 'blobs').rglob('*') if path.is_file())


def same_file(path: Path, digest: str):
    return lambda: path.exists() and file_digest(path) == digest


def test_a_tree_of_many_small_files_arrives_whole(server, mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    (a / 'src').mkdir()
    expected = {}
    for index in range(600):
        relative = f'pkg{index % 20:02d}/mod{index}.py'
        expected[relative] = f'# module {index}\n'.encode() + os.urandom(index % 1500)
    expected['empty.txt'] = b''
    expected['data/big.bin'] = os.urandom(3 * MiB + 17)            # several chunks
    for relative, content in expected.items():
        target = a / 'src' / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    wait_for(lambda: (b / 'src').is_dir() and tree(b / 'src') == expected, 120,
             'the whole tree on the other mount, byte for byte')
    assert tree(a / 'src') == expected


def test_an_edit_in_a_big_file_sends_only_its_chunks(server, mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    (a / 'media').mkdir()
    content = bytearray(os.urandom(24 * MiB))
    (a / 'media/big.bin').write_bytes(content)
    wait_for(same_file(b / 'media/big.bin', hashlib.sha256(content).hexdigest()), 120, 'big.bin on B')
    before = stored_bytes(server)

    # one byte in the middle, written in place
    with open(a / 'media/big.bin', 'r+b') as file:
        file.seek(len(content) // 2)
        file.write(b'\x00' if content[len(content) // 2] else b'\x01')
    content[len(content) // 2] = 0 if content[len(content) // 2] else 1
    wait_for(same_file(b / 'media/big.bin', hashlib.sha256(content).hexdigest()), 120, 'the edit on B')
    edited = stored_bytes(server) - before
    assert 0 < edited <= 8 * MiB, edited             # the chunks around the byte, not 24 MiB

    # 1 MiB appended
    tail = os.urandom(MiB)
    with open(a / 'media/big.bin', 'ab') as file:
        file.write(tail)
    content += tail
    wait_for(same_file(b / 'media/big.bin', hashlib.sha256(content).hexdigest()), 120, 'the append on B')
    appended = stored_bytes(server) - before - edited
    assert MiB <= appended <= MiB + 8 * MiB, appended
    assert (a / 'media/big.bin').read_bytes() == bytes(content)


def test_identical_content_in_two_objects_is_stored_once(server, mount):
    a, b = mount('alice', 'A'), mount('alice', 'B')
    content = os.urandom(12 * MiB)
    digest = hashlib.sha256(content).hexdigest()
    (a / 'one').mkdir()
    (a / 'one/copy.bin').write_bytes(content)
    wait_for(same_file(b / 'one/copy.bin', digest), 120, 'the first copy on B')
    before = stored_bytes(server)
    (a / 'two').mkdir()
    (a / 'two/again.bin').write_bytes(content)
    wait_for(same_file(b / 'two/again.bin', digest), 120, 'the second copy on B')
    assert stored_bytes(server) - before < 64 * 1024
