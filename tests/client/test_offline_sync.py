"""Offline edits on two devices of one user, then sync: merge, conflict copies, convergence.

Every test runs against a live ``oaio-server`` process (``server`` fixture) that is stopped while
the devices edit and started again for the sync; the devices are two ``OaioClient`` instances with
their own ``client_root``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import signal
import threading
from pathlib import Path

import pytest
import requests

from oaio.client import OaioClient

from oaio_testing import PASSWORD, file_digest, growing, wait_for

CHUNK = 1024 * 1024


def open_client(server, root: Path, device: str, user: str = 'alice') -> OaioClient:
    return OaioClient(server.host, {'username': user, 'password': PASSWORD}, app_id='tests', device_id=device,
                      client_root=str(root), auto_sync=False)


@pytest.fixture
def devices(server, tmp_path):
    """Two devices (laptop, phone) of user alice."""
    server.adduser('alice')
    laptop, phone = open_client(server, tmp_path / 'laptop', 'laptop'), open_client(server, tmp_path / 'phone', 'phone')
    try:
        yield laptop, phone
    finally:
        laptop.close()
        phone.close()


def sync(client: OaioClient) -> None:
    assert client.synchronize_with_server_if_online(), client.error_message


def device_state(client: OaioClient) -> dict:
    """Everything two converged devices must agree on: stamps, values and file contents."""
    state = {}
    for oaio_id, obj in client.client_objectz.items():
        root = client.files_root(oaio_id)
        state[oaio_id] = {'client_stamp': obj.client_stamp, 'server_stamp': obj.server_stamp,
                          'values': obj.client_values, 'pending': obj.pending,
                          'files': {path: file_digest(root / path) for path in obj.file_paths}}
    return state


def sync_until_converged(*clients: OaioClient, rounds: int = 4) -> dict:
    """Sync the devices in turns until none has anything pending and all hold the same objects."""
    for _ in range(rounds):
        for client in clients:
            sync(client)
        states = [device_state(client) for client in clients]
        if all(state == states[0] for state in states) and \
                not any(obj['pending'] for obj in states[0].values()):
            return states[0]
    pytest.fail('the devices did not converge:\n' + '\n'.join(json.dumps(device_state(c), indent=1) for c in clients))


def write_file(path: Path, size: int, seed: bytes) -> str:
    """Write ``size`` pseudo-random bytes in chunks (never all in memory); return their sha256."""
    block = hashlib.sha256(seed).digest() * (CHUNK // 32)
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as file:
        for index in range(0, size, CHUNK):
            chunk = (index.to_bytes(8, 'big') + block)[:min(CHUNK, size - index)]
            digest.update(chunk)
            file.write(chunk)
    return digest.hexdigest()


# offline edits on both devices ---------------------------------------------------------------

@pytest.mark.parametrize('first', ['laptop', 'phone'])
def test_offline_edits_on_both_devices_merge_and_converge(server, devices, first):
    laptop, phone = devices
    obj = laptop.register_file('notes.txt', b'base text\n')
    oaio_id = obj.oaio_id
    laptop.update_object(oaio_id, {'keep': 1, 'dropped_by_laptop': 1, 'a': 0, 'b': 0, 'same': 0})
    sync(laptop)
    sync(phone)
    assert phone.client_objectz[oaio_id].client_values == laptop.client_objectz[oaio_id].client_values
    assert (phone.files_root(oaio_id) / 'notes.txt').read_bytes() == b'base text\n'

    server.stop()
    values = laptop.client_objectz[oaio_id].client_values
    del values['dropped_by_laptop']
    laptop.update_object(oaio_id, {**values, 'a': 'laptop', 'same': 'from laptop'}, reset=True)
    laptop.update_file(oaio_id, file_content=b'laptop text\n')
    phone.update_file(oaio_id, file_content=b'phone text\n')
    phone.update_object(oaio_id, {'b': 'phone', 'same': 'from phone'})     # the newer edit of 'same'
    assert not laptop.synchronize_with_server_if_online()                  # offline is a normal state
    assert 'unreachable' in laptop.error_message
    assert laptop.client_objectz[oaio_id].pending and phone.client_objectz[oaio_id].pending
    server.start()

    order = (laptop, phone) if first == 'laptop' else (phone, laptop)
    state = sync_until_converged(*order)[oaio_id]

    values = dict(state['values'])
    paths = values.pop('_file_paths')
    assert values == {'keep': 1, 'a': 'laptop', 'b': 'phone', 'same': 'from phone'}
    value_copies = [path for path in paths if path.startswith('values.conflict-') and path.endswith('.json')]
    file_copies = [path for path in paths if path.startswith('notes.conflict-') and path.endswith('.txt')]
    assert len(value_copies) == 1 and len(file_copies) == 1, paths
    assert sorted(paths) == sorted(['notes.txt', *value_copies, *file_copies])
    for client in (laptop, phone):
        root = client.files_root(oaio_id)
        assert json.loads((root / value_copies[0]).read_text()) == {'same': 'from laptop'}
        assert {(root / 'notes.txt').read_bytes(), (root / file_copies[0]).read_bytes()} == \
            {b'laptop text\n', b'phone text\n'}
    # the server holds the converged version, too
    fresh = open_client(server, server.data.parent / 'fresh', 'fresh')
    try:
        sync(fresh)
        assert device_state(fresh) == device_state(laptop)
    finally:
        fresh.close()


def test_offline_edits_of_different_files_in_a_folder_merge_without_conflict(server, devices, tmp_path):
    laptop, phone = devices
    folder = tmp_path / 'project'
    (folder / 'sub').mkdir(parents=True)
    (folder / 'x.txt').write_text('x0')
    (folder / 'sub' / 'y.txt').write_text('y0')
    (folder / 'z.txt').write_text('z0')
    oaio_id = laptop.register_folder(str(folder)).oaio_id
    sync(laptop)
    sync(phone)
    phone_root = phone.files_root(oaio_id)
    assert (phone_root / 'sub' / 'y.txt').read_text() == 'y0'

    server.stop()
    (folder / 'x.txt').write_text('x laptop')
    (folder / 'new-on-laptop.txt').write_text('new')
    laptop.update_folder(oaio_id)
    (phone_root / 'sub' / 'y.txt').write_text('y phone')
    (phone_root / 'z.txt').unlink()
    phone.update_folder(oaio_id)
    server.start()

    state = sync_until_converged(laptop, phone)[oaio_id]
    assert state['values']['_file_paths'] == ['new-on-laptop.txt', 'sub/y.txt', 'x.txt']
    for root in (folder, phone_root):
        assert (root / 'x.txt').read_text() == 'x laptop'
        assert (root / 'sub' / 'y.txt').read_text() == 'y phone'
        assert (root / 'new-on-laptop.txt').read_text() == 'new'
        assert not list(root.rglob('*conflict*'))


@pytest.mark.parametrize('first', ['laptop', 'phone'])
def test_file_deleted_on_one_device_and_edited_on_the_other_survives(server, devices, tmp_path, first):
    laptop, phone = devices
    folder = tmp_path / 'shared'
    folder.mkdir()
    for name in ('p.txt', 'l.txt', 'both-gone.txt', 'keep.txt'):
        (folder / name).write_text(name + ' v0')
    oaio_id = laptop.register_folder(str(folder)).oaio_id
    sync(laptop)
    sync(phone)
    phone_root = phone.files_root(oaio_id)

    server.stop()
    (folder / 'p.txt').unlink()                         # the laptop deletes what the phone edits
    (folder / 'l.txt').write_text('l.txt edited on the laptop')
    (folder / 'both-gone.txt').unlink()
    laptop.update_folder(oaio_id)
    (phone_root / 'l.txt').unlink()                     # the phone deletes what the laptop edits
    (phone_root / 'p.txt').write_text('p.txt edited on the phone')
    (phone_root / 'both-gone.txt').unlink()
    phone.update_folder(oaio_id)
    server.start()

    order = (laptop, phone) if first == 'laptop' else (phone, laptop)
    state = sync_until_converged(*order)[oaio_id]
    assert state['values']['_file_paths'] == ['keep.txt', 'l.txt', 'p.txt']
    for root in (folder, phone_root):
        assert (root / 'l.txt').read_text() == 'l.txt edited on the laptop'
        assert (root / 'p.txt').read_text() == 'p.txt edited on the phone'
        assert (root / 'keep.txt').read_text() == 'keep.txt v0'
        assert not (root / 'both-gone.txt').exists()


def test_remote_delete_keeps_unsynced_local_edits(server, devices):
    laptop, phone = devices
    oaio_id = laptop.register_file('plan.txt', b'v1').oaio_id
    laptop.update_object(oaio_id, {'status': 'draft'})
    sync(laptop)
    sync(phone)

    server.stop()
    phone.update_object(oaio_id, {'status': 'edited offline'})
    phone.update_file(oaio_id, file_content=b'v2 from the phone')
    server.start()
    assert laptop.unregister_object(oaio_id, wipe_files=True) == ''
    sync(laptop)
    assert oaio_id not in laptop.client_objectz

    # the phone learns of the deletion but keeps (and re-registers) its edits
    phone.synchronize_with_server_if_online()
    assert oaio_id in phone.error_message and 'deleted' in phone.error_message
    state = sync_until_converged(phone, laptop)
    assert list(state) == [oaio_id]
    assert state[oaio_id]['values']['status'] == 'edited offline'
    assert (laptop.files_root(oaio_id) / 'plan.txt').read_bytes() == b'v2 from the phone'
    assert laptop.client_objectz[oaio_id].csh_access_right == 'C'


def test_remote_delete_of_an_unchanged_object_removes_it(server, devices):
    laptop, phone = devices
    oaio_id = laptop.register_file('old.txt', b'old').oaio_id
    sync(laptop)
    sync(phone)
    files = phone.files_root(oaio_id)
    assert laptop.unregister_object(oaio_id, wipe_files=True) == ''
    sync(laptop)
    sync(phone)
    assert oaio_id not in phone.client_objectz
    assert not files.exists()


# the server goes away in the middle of a sync ------------------------------------------------

def _stop_when(server, condition, sig: int) -> threading.Thread:
    """Stop the server with ``sig`` from a thread as soon as ``condition()`` holds (polled)."""
    errors = []

    def run():
        try:
            wait_for(condition, 120, 'the transfer to start', interval=0.005)
            server.stop(sig)
        except BaseException as exc:      # reported by the test after join()
            errors.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors
    thread.start()
    return thread


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL], ids=['SIGTERM', 'SIGKILL'])
def test_server_stopped_during_upload_then_next_sync_completes(server, devices, tmp_path, sig):
    laptop, phone = devices
    size = 384 * CHUNK
    folder = tmp_path / 'big'
    digest = write_file(folder / 'big.bin', size, b'upload')
    oaio_id = laptop.register_file('big.bin', root_path=str(folder)).oaio_id
    stopper = _stop_when(server, growing(server.data / 'tmp', 'chunk-*', CHUNK), sig)
    ok = laptop.synchronize_with_server_if_online()
    stopper.join(60)
    assert not stopper.errors, stopper.errors
    assert server.process is None, 'the server was not stopped during the upload'
    if sig == signal.SIGKILL or not ok:
        # SIGTERM lets the server finish requests in flight for a few seconds: the upload may complete
        assert not ok and 'unreachable' in laptop.error_message, laptop.error_message
        assert laptop.client_objectz[oaio_id].pending

    server.start()
    sync(laptop)
    assert not laptop.client_objectz[oaio_id].pending
    sync(phone)
    assert list(phone.client_objectz) == [oaio_id]
    assert phone.client_objectz[oaio_id].file_paths == ['big.bin']
    assert file_digest(phone.files_root(oaio_id) / 'big.bin') == digest
    # exactly one version went up: the one registered by the laptop
    session = requests.Session()
    session.get(server.url + 'login/', timeout=30)
    assert session.post(server.url + 'login/', json={'username': 'alice', 'password': PASSWORD}, timeout=30,
                        headers={'X-CSRFToken': session.cookies['csrftoken'], 'Referer': server.url + 'login/'}).ok
    listing = session.get(server.url + 'oaio_stampz/', timeout=30).json()
    assert [(o['oaio_id'], o['client_stamp']) for o in listing] == \
        [(oaio_id, laptop.client_objectz[oaio_id].client_stamp)]
    assert sync_until_converged(laptop, phone)[oaio_id]['files'] == {'big.bin': digest}


def test_server_killed_during_download_then_next_sync_completes(server, devices, tmp_path, caplog):
    # SIGKILL: with SIGTERM the server finishes the response in its grace period
    laptop, phone = devices
    size = 384 * CHUNK
    folder = tmp_path / 'big'
    digest = write_file(folder / 'big.bin', size, b'download')
    oaio_id = laptop.register_file('big.bin', root_path=str(folder)).oaio_id
    small_id = laptop.register_object({'_name': 'small', 'n': 1}).oaio_id
    sync(laptop)

    partial = Path(phone.client_root) / 'partial'
    stopper = _stop_when(server, growing(partial, 'part-*', 16 * CHUNK), signal.SIGKILL)
    ok = phone.synchronize_with_server_if_online()
    stopper.join(60)
    assert not stopper.errors, stopper.errors
    assert server.process is None, 'the server was not stopped during the download'
    assert not ok and phone.error_message
    assert len(list(partial.iterdir())) == 1            # what arrived is kept for the next attempt

    server.start()
    caplog.set_level(logging.INFO, logger='oaio.client.sync')
    sync(phone)
    assert sorted(phone.client_objectz) == sorted([oaio_id, small_id])
    assert file_digest(phone.files_root(oaio_id) / 'big.bin') == digest
    assert not list((Path(phone.client_root) / 'tmp').iterdir()) and not list(partial.iterdir())
    # the second attempt fetched only what the first had not brought
    resumed = [record.getMessage() for record in caplog.records if 'resumes' in record.getMessage()]
    assert len(resumed) == 1 and not resumed[0].endswith(f': 0 of {size} bytes are here already'), resumed
    assert sync_until_converged(laptop, phone)[oaio_id]['files'] == {'big.bin': digest}
