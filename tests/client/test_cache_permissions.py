"""The client's cache is private to its user: the directory tree 0700, every file 0600 (no group or
other bits) — after registering, uploading, downloading (into nested folders) and syncing."""
import os
import stat

from oaio.client import store


def loose_entries(root) -> list[str]:
    """Every entry under ``root`` (itself included) that the group or others may access."""
    loose = []
    for entry in [root, *root.rglob('*')]:
        mode = stat.S_IMODE(os.lstat(entry).st_mode)
        if mode & 0o077:
            loose.append(f'{entry.relative_to(root.parent)}: {mode:o}')
    return loose


def test_the_cache_directory_and_its_files_are_private(make_client, tmp_path):
    old_umask = os.umask(0o022)         # the usual umask: what mkdir/open create is 0755/0644 unless chosen
    try:
        writer = make_client('alice', 'laptop')
        obj = writer.register_file('deep/er/doc.txt', file_content=b'private words')
        writer.update_object(obj.oaio_id, {'_name': 'Doc'})
        assert writer.synchronize_with_server_if_online(), writer.error_message
        reader = make_client('alice', 'phone')
        assert reader.synchronize_with_server_if_online(), reader.error_message
        assert (reader.files_root(obj.oaio_id) / 'deep/er/doc.txt').read_bytes() == b'private words'
    finally:
        os.umask(old_umask)
    for client in (writer, reader):
        root = client.files_root(obj.oaio_id).parents[1]           # client_root/filez/<id> → client_root
        assert (root / store.OBJECTS_DIR).is_dir() and (root / store.FILES_DIR).is_dir()
        assert (root / store.STATE_FILE).is_file() and list((root / store.OBJECTS_DIR).glob('*.json'))
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert loose_entries(root) == []
