"""A hostile server (tests/client/hostile_server.py, a separate process speaking HTTP) sends ids and
file paths that would escape ``client_root``, and manifests that lie about the content: the client
refuses each such object with an error naming it, writes nothing outside ``client_root``, and still
stores the valid objects with their files."""
from __future__ import annotations

from pathlib import Path

import pytest

from oaio.client import OaioClient

from hostile_server import STAMP, Hostile, entry, served, sha


@pytest.fixture
def hostile(tmp_path):
    started = []

    def start(scenario: dict) -> Hostile:
        started.append(Hostile(tmp_path, scenario))
        return started[-1]
    yield start
    for server in started:
        server.stop()


def open_client(host: str, root: Path) -> OaioClient:
    return OaioClient(host, {'username': 'alice', 'password': 'irrelevant'}, app_id='tests', device_id='victim',
                      client_root=str(root), auto_sync=False)


def beside(tmp_path: Path, around: Path) -> set[Path]:
    """Everything in ``tmp_path`` but the folder around the client and the hostile server's own."""
    return {path for path in tmp_path.rglob('*') if path.name not in ('around', 'hostile')
            and not {tmp_path / 'around', tmp_path / 'hostile'} & set(path.parents)}


def test_hostile_ids_paths_and_manifests_are_refused_per_object(hostile, tmp_path):
    around = tmp_path / 'around'
    root = around / 'a' / 'b' / 'c' / 'client'      # deep enough that '../' chains land inside tmp_path
    outside = around / 'elsewhere'
    outside.mkdir(parents=True)
    absolute = str(around / 'absolute-target.txt')
    good_files = {'docs/readme.txt': 'hello from the good object\n', 'top.txt': 'top\n'}
    hostile_ids = {
        '../../etc': entry('../../etc', {'x': 1}),
        'a/b': entry('a/b', {'x': 1}),
        '..': entry('..', {'x': 1}),
        '/etc/passwd': entry('/etc/passwd', {'x': 1}),
        'nul\x00id': entry('nul\x00id', {'x': 1}),
        'esc\x1b[31mred': entry('esc\x1b[31mred', {'x': 1}),
        'new\nline': entry('new\nline', {'x': 1}),
        'del\x7fchar': entry('del\x7fchar', {'x': 1}),
        'n' * 300: entry('n' * 300, {'x': 1}),
        'ü' * 150: entry('ü' * 150, {'x': 1}),          # 150 characters, 300 bytes
    }
    hostile_paths = {
        'evil-absolute': [absolute],
        'evil-parent': ['../../../../../../escaped.txt'],
        'evil-inner-parent': ['a/../../../../../../../escaped-inner.txt'],
        'evil-dot': ['./dot.txt'],
        'evil-empty-part': ['a//b.txt'],
        'evil-backslash': ['..\\..\\..\\..\\..\\..\\backslash.txt'],
        'evil-nul-path': ['a\x00b.txt'],
        'evil-control-path': ['bell\x07.txt'],
        'evil-long-name': ['n' * 300 + '.txt'],
        'evil-duplicate': ['same.txt', 'same.txt'],
    }
    changes = [
        *hostile_ids.values(),
        *(entry(oaio_id, {'_file_paths': paths}, {path: 'pwned\n' for path in paths})
          for oaio_id, paths in hostile_paths.items()),
        entry('evil-paths-not-a-list', {'_file_paths': '/etc/passwd'}),
        # the manifest names a path that _file_paths does not list
        {**entry('evil-extra-manifest', {'_file_paths': ['ok.txt']}, {'ok.txt': 'ok'}),
         'files': {'ok.txt': {'sha256': sha('ok'), 'size': 2},
                   '../../../../../../manifest-escape.txt': {'sha256': sha('x'), 'size': 1}}},
        # the manifest's hash does not match what files/ serves (same size)
        {**entry('evil-wrong-hash', {'_file_paths': ['data.txt']}),
         'files': {'data.txt': {'sha256': sha('expected'), 'size': len('tampered')}}},
        # the hash matches, the size does not
        {**entry('evil-wrong-size', {'_file_paths': ['data.txt']}),
         'files': {'data.txt': {'sha256': sha('content'), 'size': 3}}},
        {**entry('evil-bad-sha', {'_file_paths': ['data.txt']}),
         'files': {'data.txt': {'sha256': '../../x', 'size': 1}}},
        entry('evil-stamp', {'x': 1}, client_stamp='../../20261125101010'),
        entry('evil-right', {'x': 1}, csh_access_right='../'),
        {'oaio_id': '../../victim', 'gone': 'deleted'},
        {'oaio_id': 'x/' * 10, 'gone': 'unsubscribed'},
        'not an object',
        {'oaio': 'not an object'},
        # valid objects: one with files, one whose _root_path points outside (files go to filez/)
        entry('good-object', {'_name': 'good', 'n': 1, '_file_paths': sorted(good_files)}, good_files),
        entry('good-root-path', {'_root_path': str(outside), '_file_paths': ['f.txt']}, {'f.txt': 'f\n'}),
    ]
    files = {}
    for oaio_id, paths in hostile_paths.items():
        files.update(served(oaio_id, {path: 'pwned\n' for path in paths}))
    files.update(served('evil-extra-manifest', {'ok.txt': 'ok', '../../../../../../manifest-escape.txt': 'x'}))
    files.update(served('evil-wrong-hash', {'data.txt': 'tampered'}))
    files.update(served('evil-wrong-size', {'data.txt': 'content'}))
    files.update(served('good-object', good_files))
    files.update(served('good-root-path', {'f.txt': 'f\n'}))
    server = hostile({'changes': changes, 'files': files})
    before = beside(tmp_path, around)
    passwd = Path('/etc/passwd').read_bytes() if Path('/etc/passwd').exists() else None

    with open_client(server.host, root) as client:
        assert not client.synchronize_with_server_if_online()
        message = client.error_message
        objects = client.client_objectz
        assert sorted(objects) == ['good-object', 'good-root-path'], message
        assert objects['good-object'].client_values['n'] == 1 and not objects['good-object'].pending
        good_root = client.files_root('good-object')
        assert good_root == root / 'filez' / 'good-object'
        assert {path: (good_root / path).read_text() for path in good_files} == good_files
        assert (client.files_root('good-root-path') / 'f.txt').read_text() == 'f\n'
        assert client.files_root('good-root-path') == root / 'filez' / 'good-root-path'

    # one error per hostile object, naming it
    for oaio_id in [*hostile_ids, *hostile_paths, 'evil-paths-not-a-list', 'evil-extra-manifest', 'evil-wrong-hash',
                    'evil-wrong-size', 'evil-bad-sha', 'evil-stamp', 'evil-right', '../../victim', 'x/' * 10]:
        assert repr(oaio_id[:80]) in message, f'no error names {oaio_id!r}:\n{message}'
    assert message.count("'good-") == 0, message

    # nothing was written outside client_root: not beside it, not in the target folders, not in /etc
    strays = [path for path in around.rglob('*')
              if path not in (outside, root, *root.parents) and root not in path.parents]
    assert not strays
    assert not list(outside.iterdir())
    assert beside(tmp_path, around) == before
    assert not Path('/etc/passwd.json').exists()
    assert passwd is None or Path('/etc/passwd').read_bytes() == passwd
    # nor anything unexpected inside it: only the valid objects' records and files
    assert sorted(path.name for path in (root / 'objz').iterdir()) == ['good-object.json', 'good-root-path.json']
    assert sorted(path.name for path in (root / 'filez').iterdir()) == ['good-object', 'good-root-path']
    assert not list((root / 'tmp').iterdir())
    # files of refused paths were never even requested
    requested = {digest for request in server.requests() for digest in request.get('hashes', [])}
    assert requested and not requested & {sha('pwned\n'), sha('x')}, requested


def test_wrong_hash_is_not_stored_and_keeps_no_temp_file(hostile, tmp_path):
    root = tmp_path / 'client'
    changes = [{**entry('tampered', {'_file_paths': ['report.txt']}),
                'files': {'report.txt': {'sha256': sha('the real report'), 'size': len('the real report')}}},
               entry('fine', {'_file_paths': ['report.txt']}, {'report.txt': 'another real report'})]
    files = {**served('tampered', {'report.txt': 'a forged report'}),
             **served('fine', {'report.txt': 'another real report'})}
    server = hostile({'changes': changes, 'files': files})
    with open_client(server.host, root) as client:
        assert not client.synchronize_with_server_if_online()
        assert "'tampered'" in client.error_message and 'sha256' in client.error_message
        assert list(client.client_objectz) == ['fine']
        assert not (root / 'filez' / 'tampered').exists()
        assert not (root / 'objz' / 'tampered.json').exists()
        assert not list((root / 'tmp').iterdir())
        assert (root / 'filez' / 'fine' / 'report.txt').read_text() == 'another real report'
    assert any(sha('the real report') in request.get('hashes', []) for request in server.requests())


def test_oversized_download_is_cut_off(hostile, tmp_path):
    """A file that streams far beyond its manifest size is refused without reading all of it."""
    root = tmp_path / 'client'
    chunk = 'z' * 65536
    changes = [{**entry('endless', {'_file_paths': ['big.bin']}),
                'files': {'big.bin': {'sha256': sha(chunk), 'size': len(chunk)}}},
               entry('fine', {'n': 1})]
    server = hostile({'changes': changes,
                      'files': {f'endless/{STAMP}/big.bin': {'content': chunk, 'repeat': 16 * 1024}}})   # 1 GiB
    with open_client(server.host, root) as client:
        assert not client.synchronize_with_server_if_online()
        assert "'endless'" in client.error_message
        assert list(client.client_objectz) == ['fine']
        assert not list((root / 'tmp').iterdir())
    downloads = [request for request in server.requests() if sha(chunk) in request.get('hashes', [])]
    assert len(downloads) == 1 and downloads[0]['aborted'], downloads
    assert downloads[0]['sent'] < 256 * 1024 * 1024, downloads


def test_server_error_on_a_file_does_not_skip_the_object(hostile, tmp_path):
    """A 503 on a file is no verdict on the object: the next sync fetches it."""
    root = tmp_path / 'client'
    changes = [entry('flaky', {'_file_paths': ['f.txt']}, {'f.txt': 'eventually\n'})]
    server = hostile({'changes': changes,
                      'files': {f'flaky/{STAMP}/f.txt': {'content': 'eventually\n', 'fail_first': True}}})
    with open_client(server.host, root) as client:
        assert not client.synchronize_with_server_if_online()
        assert '503' in client.error_message
        assert client.synchronize_with_server_if_online(), client.error_message
        assert list(client.client_objectz) == ['flaky']
        assert (root / 'filez' / 'flaky' / 'f.txt').read_text() == 'eventually\n'


def many_files(count: int) -> dict:
    return {f'part-{index:02d}.txt': f'part {index}\n' * (index + 1) for index in range(count)}


def test_parallel_downloads_refuse_the_object_of_one_forged_file(hostile, tmp_path):
    """The files of a version are fetched several at a time: one forged file among them refuses its
    object (no record, no temp file, the file named), and the other objects are stored."""
    root = tmp_path / 'client'
    texts = many_files(12)
    changes = [entry('many', {'_file_paths': sorted(texts)}, texts),
               entry('fine', {'_file_paths': ['f.txt']}, {'f.txt': 'fine\n'})]
    files = {**served('many', {**texts, 'part-05.txt': 'forged\n'}), **served('fine', {'f.txt': 'fine\n'})}
    server = hostile({'changes': changes, 'files': files})
    with open_client(server.host, root) as client:
        assert not client.synchronize_with_server_if_online()
        assert "'many'" in client.error_message and "'part-05.txt'" in client.error_message
        assert list(client.client_objectz) == ['fine']
        assert not (root / 'objz' / 'many.json').exists()
        assert not list((root / 'tmp').iterdir())
        assert (root / 'filez' / 'fine' / 'f.txt').read_text() == 'fine\n'


def test_parallel_downloads_after_a_server_error_on_one_file(hostile, tmp_path):
    """A 503 on one of many files ends the round (the cursor stays); the next sync gets them all."""
    root = tmp_path / 'client'
    texts = many_files(12)
    files = served('many', texts)
    files[f'many/{STAMP}/part-07.txt']['fail_first'] = True
    server = hostile({'changes': [entry('many', {'_file_paths': sorted(texts)}, texts)], 'files': files})
    with open_client(server.host, root) as client:
        assert not client.synchronize_with_server_if_online()
        assert '503' in client.error_message
        assert not (root / 'objz' / 'many.json').exists()
        assert client.synchronize_with_server_if_online(), client.error_message
        assert list(client.client_objectz) == ['many']
        assert {path.name: path.read_text() for path in (root / 'filez' / 'many').iterdir()} == texts
        assert not list((root / 'tmp').iterdir())
