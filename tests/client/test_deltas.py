"""Files travel as deltas (docs/protocol.md, "Deltas"): a device one version behind applies what
the head changed to the files it has; a device further behind asks for the whole file list once;
both end with every file byte for byte."""
from __future__ import annotations

import re


def sync(client) -> None:
    assert client.synchronize_with_server_if_online(), client.error_message


def files_of(client, oaio_id: str) -> dict[str, bytes]:
    root = client.files_root(oaio_id)
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob('*')) if path.is_file()}


def manifest_requests(server) -> int:
    return len(re.findall(r'"GET /api/manifest/', server.log()))


def test_devices_behind_by_one_or_more_versions_end_with_the_same_files(make_client, server, tmp_path):
    laptop, phone = make_client('alice', 'laptop'), make_client('alice', 'phone')
    folder = tmp_path / 'tree'
    expected = {f'd{index % 5}/f{index}.txt': f'{index}\n'.encode() for index in range(50)}
    for path, content in expected.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(content)
    oaio_id = laptop.register_folder(str(folder)).oaio_id
    sync(laptop)
    sync(phone)
    assert files_of(phone, oaio_id) == expected

    # one version behind: the feed's delta is applied, no whole list asked for
    (folder / 'd1/f1.txt').write_bytes(b'edited once\n')
    expected['d1/f1.txt'] = b'edited once\n'
    assert laptop.update_folder(oaio_id)
    sync(laptop)
    before = manifest_requests(server)
    sync(phone)
    assert files_of(phone, oaio_id) == expected
    assert manifest_requests(server) == before
    assert phone.client_objectz[oaio_id].file_paths == sorted(expected)

    # two versions behind (an edit, then a removal and an addition): the whole list, once
    (folder / 'd2/f2.txt').write_bytes(b'edited twice\n')
    expected['d2/f2.txt'] = b'edited twice\n'
    assert laptop.update_folder(oaio_id)
    sync(laptop)
    (folder / 'd3/f3.txt').unlink()
    del expected['d3/f3.txt']
    (folder / 'new.txt').write_bytes(b'new\n')
    expected['new.txt'] = b'new\n'
    assert laptop.update_folder(oaio_id)
    sync(laptop)
    sync(phone)
    assert files_of(phone, oaio_id) == expected
    assert manifest_requests(server) == before + 1
    assert phone.client_objectz[oaio_id].file_paths == sorted(expected)
    assert not phone.client_objectz[oaio_id].pending
