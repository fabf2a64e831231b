"""A 1 GiB file goes up from one client and down to another in bounded memory.

Each client runs in a subprocess of its own and reports its peak resident set size
(``ru_maxrss``, KiB on Linux) at the end; the file is generated on disk in chunks.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from oaio_testing import PASSWORD, file_digest

CHUNK = 1024 * 1024
SIZE = 1024 ** 3 + 12345                    # ≥ 1 GiB, and not a multiple of any chunk size
MAX_RSS_BYTES = 300 * 1000 ** 2

CLIENT = textwrap.dedent('''
    import json, os, resource, sys
    from oaio.client import OaioClient

    host, root, device, folder = sys.argv[1:5]
    credentials = {'username': 'alice', 'password': os.environ['OAIO_PASSWORD']}
    with OaioClient(host, credentials, app_id='tests', device_id=device, client_root=root, auto_sync=False) as client:
        oaio_id = client.register_file('huge.bin', root_path=folder).oaio_id if folder else ''
        ok = client.synchronize_with_server_if_online()
        objects = client.client_objectz
        report = {'ok': ok, 'error': client.error_message, 'ids': sorted(objects),
                  'pending': [i for i, obj in objects.items() if obj.pending],
                  'files': {i: str(client.files_root(i) / 'huge.bin') for i in objects}}
    report['maxrss_kib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(report))
''')


def write_file(path: Path, size: int) -> str:
    """Write ``size`` pseudo-random bytes in 1 MiB chunks; return their sha256."""
    block = os.urandom(CHUNK)
    digest = hashlib.sha256()
    with open(path, 'wb') as file:
        for index in range(0, size, CHUNK):
            chunk = (index.to_bytes(8, 'big') + block[8:])[:min(CHUNK, size - index)]
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()


def run_client(server, root: Path, device: str, folder: str = '') -> dict:
    result = subprocess.run([sys.executable, '-c', CLIENT, server.host, str(root), device, folder],
                            capture_output=True, text=True, timeout=600, env=dict(os.environ, OAIO_PASSWORD=PASSWORD))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a running process, in KiB."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
    raise AssertionError('no VmHWM in /proc/<pid>/status')


def test_one_gib_file_round_trip_in_bounded_memory(server, tmp_path, record_property):
    server.adduser('alice')
    folder = tmp_path / 'upload'
    folder.mkdir()
    original = folder / 'huge.bin'
    downloaded = None
    try:
        digest = write_file(original, SIZE)
        up = run_client(server, tmp_path / 'up-root', 'uploader', str(folder))
        assert up['ok'], up['error']
        assert len(up['ids']) == 1 and not up['pending']

        down = run_client(server, tmp_path / 'down-root', 'downloader')
        assert down['ok'], down['error']
        assert down['ids'] == up['ids'] and not down['pending']
        downloaded = Path(down['files'][down['ids'][0]])
        assert downloaded.stat().st_size == SIZE
        assert file_digest(downloaded) == digest

        server_kib = peak_rss_kib(server.process.pid)
        sizes = {'uploader': up['maxrss_kib'], 'downloader': down['maxrss_kib'], 'server': server_kib}
        record_property('peak_rss_kib', sizes)
        print('peak RSS (KiB):', sizes)
        assert up['maxrss_kib'] * 1024 < MAX_RSS_BYTES, sizes
        assert down['maxrss_kib'] * 1024 < MAX_RSS_BYTES, sizes
        assert server_kib * 1024 < MAX_RSS_BYTES, sizes
    finally:                        # pytest keeps the last runs' tmp_path: do not leave GiBs behind
        for path in [original, downloaded, *(server.data / 'blobs').rglob('*')]:
            if path is not None and path.is_file():
                path.unlink()
