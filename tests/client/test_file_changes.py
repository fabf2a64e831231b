"""A tree written from outside (the mount): ``note_changed``, ``note_removed``, ``note_renamed`` and
``take_file_changes`` look at the paths named and nothing else — no walk of the object, no hash of an
unchanged file — against a live server; ``rescan_files`` is the one full walk."""
from __future__ import annotations

from urllib.parse import quote

import pytest

from oaio.client import sync as sync_module
from oaio.client.protocol import FILE_PATHS_KEY, ROOT_PATH_KEY


@pytest.fixture
def hashed(monkeypatch) -> list[str]:
    """The files the client hashes, in order (the real hash_file, counted)."""
    calls: list[str] = []
    real = sync_module.hash_file

    def counting(path):
        calls.append(path.name)
        return real(path)
    monkeypatch.setattr(sync_module, 'hash_file', counting)
    return calls


def server_head(session, oaio_id: str) -> dict:
    return next(obj for obj in session.get('oaio_stampz/').json() if obj['oaio_id'] == oaio_id)


def server_file(session, head: dict, path: str) -> bytes:
    answer = session.get(f'files/{quote(head["oaio_id"], safe="")}/{head["client_stamp"]}/{quote(path)}')
    assert answer.status_code == 200, answer.text
    return answer.content


def object_with_files(client, count: int) -> tuple[str, object]:
    obj = client.register_object({'_name': 'many'})
    root = client.files_root(obj.oaio_id)
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (root / f'f{index:03d}.txt').write_text(f'file {index}\n')
    assert client.rescan_files(obj.oaio_id)
    assert client.synchronize_with_server_if_online(), client.error_message
    return obj.oaio_id, root


def test_one_changed_file_is_the_only_one_looked_at(make_client, api, hashed):
    client = make_client('alice')
    oaio_id, root = object_with_files(client, 200)
    hashed.clear()
    (root / 'f007.txt').write_text('edited\n')
    assert client.note_changed(oaio_id, 'f007.txt')
    assert hashed == ['f007.txt']
    assert client.synchronize_with_server_if_online(), client.error_message
    head = server_head(api('alice'), oaio_id)
    assert server_file(api('alice'), head, 'f007.txt') == b'edited\n'
    assert len(head['client_values'][FILE_PATHS_KEY]) == 200
    assert not client.note_changed(oaio_id, 'f008.txt'), 'an unchanged file makes no version'


def test_new_removed_and_renamed_files(make_client, api, hashed):
    client = make_client('alice')
    oaio_id, root = object_with_files(client, 5)
    (root / 'new.txt').write_text('new\n')
    (root / 'f000.txt').unlink()
    (root / 'f001.txt').rename(root / 'moved.txt')
    hashed.clear()
    assert client.take_file_changes(oaio_id, ['new.txt', 'f000.txt', 'f001.txt', 'moved.txt'],
                                    renamed=[('f001.txt', 'moved.txt')])
    assert hashed == ['new.txt'], 'a moved file keeps its hash'
    assert client.object(oaio_id).file_paths == ['f002.txt', 'f003.txt', 'f004.txt', 'moved.txt', 'new.txt']
    assert client.synchronize_with_server_if_online(), client.error_message
    head = server_head(api('alice'), oaio_id)
    assert server_file(api('alice'), head, 'moved.txt') == b'file 1\n'
    (root / 'f002.txt').unlink()
    assert client.note_removed(oaio_id, 'f002.txt')
    assert 'f002.txt' not in client.object(oaio_id).file_paths


def test_folders_are_taken_and_dropped_whole(make_client, hashed):
    client = make_client('alice')
    oaio_id, root = object_with_files(client, 3)
    (root / 'docs' / 'deep').mkdir(parents=True)
    (root / 'docs' / 'a.txt').write_text('a')
    (root / 'docs' / 'deep' / 'b.txt').write_text('b')
    (root / 'docs' / 'link').symlink_to('a.txt')
    assert client.note_changed(oaio_id, 'docs')
    assert [path for path in client.object(oaio_id).file_paths if path.startswith('docs/')] == \
        ['docs/a.txt', 'docs/deep/b.txt']
    hashed.clear()
    (root / 'docs').rename(root / 'papers')
    assert client.note_renamed(oaio_id, 'docs', 'papers')
    assert hashed == []
    assert [path for path in client.object(oaio_id).file_paths if '/' in path] == ['papers/a.txt', 'papers/deep/b.txt']
    for path in ('papers/a.txt', 'papers/deep/b.txt', 'papers/link'):
        (root / path).unlink()
    assert client.note_removed(oaio_id, 'papers')
    assert client.object(oaio_id).file_paths == ['f000.txt', 'f001.txt', 'f002.txt']


def test_ignored_files_stay_out_of_folder_walks(make_client, tmp_path):
    client = make_client('alice')
    client._ignore_file = lambda path: path.endswith('.swp')
    oaio_id, root = object_with_files(client, 1)
    (root / 'sub').mkdir()
    (root / 'sub' / 'kept.txt').write_text('k')
    (root / 'sub' / '.kept.txt.swp').write_text('scratch')
    (root / 'top.swp').write_text('scratch')
    assert client.note_changed(oaio_id, 'sub')
    assert not client.note_changed(oaio_id, 'top.swp')
    assert client.object(oaio_id).file_paths == ['f000.txt', 'sub/kept.txt']
    assert not client.rescan_files(oaio_id)


def test_rescan_finds_what_nobody_noted(make_client, api):
    client = make_client('alice')
    oaio_id, root = object_with_files(client, 4)
    assert not client.rescan_files(oaio_id)
    (root / 'f002.txt').write_text('changed behind its back\n')
    (root / 'f003.txt').unlink()
    assert client.rescan_files(oaio_id)
    assert client.object(oaio_id).file_paths == ['f000.txt', 'f001.txt', 'f002.txt']
    assert client.synchronize_with_server_if_online(), client.error_message
    head = server_head(api('alice'), oaio_id)
    assert server_file(api('alice'), head, 'f002.txt') == b'changed behind its back\n'


def test_a_file_changed_and_hashed_by_a_sync_before_the_note_still_makes_a_version(make_client, api):
    client = make_client('alice')
    oaio_id, root = object_with_files(client, 2)
    (root / 'f001.txt').write_text('edited before the note\n')
    client._engine.local_manifest(client._engine.records[oaio_id], strict=False)     # e.g. a pull looked at it
    assert client.note_changed(oaio_id, 'f001.txt')
    assert client.synchronize_with_server_if_online(), client.error_message
    assert server_file(api('alice'), server_head(api('alice'), oaio_id), 'f001.txt') == b'edited before the note\n'


def test_replace_values_keeps_the_managed_keys(make_client):
    client = make_client('alice')
    oaio_id, _ = object_with_files(client, 2)
    client.update_object(oaio_id, {ROOT_PATH_KEY: '{home}/x'})
    obj = client.replace_values(oaio_id, {'_name': 'renamed', 'colour': 'red', FILE_PATHS_KEY: ['bogus']})
    assert obj.client_values == {'_name': 'renamed', 'colour': 'red', FILE_PATHS_KEY: ['f000.txt', 'f001.txt'],
                                 ROOT_PATH_KEY: '{home}/x'}
