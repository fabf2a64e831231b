"""What the server offers its operator: the health check, the metrics, the front page, workers."""
import contextlib
import importlib.metadata
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from oaio_testing import Api, ServerProcess, logged_errors, running_server, wait_for

STAMP = '20261125101010123456'


def get(server, path: str, **kwargs) -> requests.Response:
    return requests.get(f'http://{server.host}{path}', timeout=30, **kwargs)


def test_healthz_answers_ok_without_a_session(server):
    answer = get(server, '/healthz')
    assert answer.status_code == 200, answer.text
    assert answer.json() == {'status': 'ok', 'database': 'ok', 'storage': 'ok'}
    assert 'set-cookie' not in answer.headers and answer.headers['cache-control'] == 'no-store'
    # a probe may name the server by any address: no host check, as for a load balancer
    assert get(server, '/healthz', headers={'Host': '10.1.2.3'}).status_code == 200
    assert not list((server.data / 'blobs' / 'healthz').iterdir())     # the probe is deleted again


def test_healthz_answers_503_naming_the_storage_when_blobs_cannot_be_stored(server):
    blobs = server.data / 'blobs'
    blobs.rename(server.data / 'blobs-away')
    blobs.write_text('a file where the blob directory was')
    answer = get(server, '/healthz')
    assert answer.status_code == 503, answer.text
    assert answer.json() == {'status': 'failing', 'database': 'ok', 'storage': 'failing'}
    assert 'health check: the storage is failing' in server.log()
    blobs.unlink()
    (server.data / 'blobs-away').rename(blobs)
    assert get(server, '/healthz').status_code == 200


def test_healthz_answers_only_get(server):
    answer = requests.post(f'http://{server.host}/healthz', timeout=30)
    assert answer.status_code == 405 and answer.json()['error'] == 'method_not_allowed'


def scrape(server) -> dict:
    """The server's metrics: {(sample name, sorted labels): value}."""
    answer = get(server, '/metrics')
    assert answer.status_code == 200, answer.text
    assert answer.headers['content-type'].startswith('text/plain; version=')
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


def requests_counted(metrics: dict, method: str, route: str, status: str) -> float:
    labels = (('method', method), ('route', route), ('status', status))
    return metrics.get(('oaio_http_requests_total', labels), 0)


def test_metrics_count_requests_by_route_and_status_and_what_is_stored(api, server):
    alice = api('alice')
    before = scrape(server)
    assert alice.request('put', f'files/doc/{STAMP}/a.txt', data=b'hello').status_code == 201
    assert alice.post('register/', json={'oaio_id': 'doc', 'client_stamp': STAMP,
                                         'client_values': {'_file_paths': ['a.txt']}}).status_code == 200
    assert alice.get(f'files/doc/{STAMP}/a.txt').content == b'hello'
    assert alice.get('changes/', params={'since': 0}).status_code == 200
    assert alice.get('no-such-endpoint/').status_code == 404
    expected = (('PUT', 'files-put', '201'), ('GET', 'files-get', '200'), ('POST', 'api', '200'),
                ('GET', 'changes', '200'), ('GET', 'api', '404'), ('GET', 'metrics', '200'))

    def moved() -> dict | None:
        # a request is counted once its answer is sent: the client may ask again a moment before that
        metrics = scrape(server)
        return metrics if all(requests_counted(metrics, *labels) > requests_counted(before, *labels)
                              for labels in expected) else None
    after = wait_for(moved, what='every request counted')
    count = ('oaio_http_request_duration_seconds_count', (('method', 'PUT'), ('route', 'files-put')))
    assert after[count] >= 1
    assert after[('oaio_stored_bytes', ())] == 5 and after[('oaio_blobs', ())] == 1
    assert after[('oaio_versions', ())] == 1
    assert after[('oaio_long_polls_waiting', ())] == 0 and after[('oaio_uploads_in_progress', ())] == 0


def test_metrics_are_refused_to_addresses_not_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv('OAIO_METRICS_ALLOW', '192.0.2.0/24')        # not loopback, where the test asks from
    with running_server(tmp_path / 'data') as server:
        answer = get(server, '/metrics')
        assert answer.status_code == 403 and answer.json()['error'] == 'forbidden'
        assert 'oaio_' not in answer.text


def test_metrics_show_the_long_polls_waiting(api, server):
    alice = api('alice')
    cursor = alice.get('changes/').json()['cursor']
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(alice.get, 'changes/', params={'since': cursor, 'wait': 30})
        wait_for(lambda: scrape(server)[('oaio_long_polls_waiting', ())] == 1, what='a waiting long poll')
        assert alice.post('register/', json={'oaio_id': 'wake', 'client_stamp': STAMP,
                                             'client_values': {}}).status_code == 200
        assert waiting.result(timeout=30).json()['changes']
    assert scrape(server)[('oaio_long_polls_waiting', ())] == 0


def test_the_front_page_says_what_the_server_is(server):
    page = get(server, '/')
    assert page.status_code == 200 and page.headers['content-type'].startswith('text/html')
    assert f'version {importlib.metadata.version("oaio")}' in page.text
    assert 'href="/admin/"' in page.text and '<script' not in page.text
    assert get(server, '/nothing-here').status_code == 404


TIMESTAMPED = r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO '


def test_uvicorn_log_lines_carry_timestamps(server):
    assert get(server, '/healthz').status_code == 200
    wait_for(lambda: re.search(TIMESTAMPED + r'uvicorn\.access: 127\.0\.0\.1:\d+ - "GET /healthz HTTP/1\.1" 200',
                               server.log()), what='a timestamped access line')
    assert re.search(f'(?m)^{TIMESTAMPED}' + r'uvicorn\.error: Started server process', server.log())


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    children = set()
    for stat in Path('/proc').glob('[0-9]*/stat'):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(')', 1)[1].split()
            if int(fields[1]) == pid:
                children.add(int(stat.parent.name))
    return children


def is_gone(pid: int) -> bool:
    try:
        state = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]
    except OSError:
        return True
    return state in ('Z', 'X')          # exited; reaped by whoever inherited it


def test_workers_serve_and_all_stop_on_sigterm(tmp_path):
    server = ServerProcess(data=tmp_path / 'data', env=dict(os.environ, OAIO_PASSWORD_HASHER='fast'))
    server.log_path = tmp_path / 'server.log'
    with open(server.log_path, 'wb') as log:
        server.process = subprocess.Popen(
            [sys.executable, '-m', 'oaio.server.cli', 'serve', '--data', str(server.data), '--bind', server.host,
             '--workers', '2'], stdout=log, stderr=subprocess.STDOUT, env=server.env)
    try:
        def started_workers() -> set[int]:
            workers = set(map(int, re.findall(r'Started server process \[(\d+)\]', server.log())))
            return workers if len(workers) == 2 else set()
        workers = wait_for(started_workers, timeout=60, what='two workers started')
        assert workers <= children_of(server.process.pid), server.log()
        family = children_of(server.process.pid) | {server.process.pid}
        server.adduser('alice')
        alice = Api(server, 'alice')
        assert alice.login().ok
        for _ in range(6):
            assert alice.get('current_stamp/').ok and get(server, '/healthz').ok
        cursor = alice.get('changes/').json()['cursor']
        with ThreadPoolExecutor(1) as pool:
            long_poll = pool.submit(alice.get, 'changes/', params={'since': cursor, 'wait': 30})
            time.sleep(1)                   # it waits in one of the workers
            began = time.monotonic()
            code = server.stop()
            # answered at once, as by one process: not cut off with a 503 after the 3 s grace period
            assert long_poll.result(timeout=30).status_code == 200 and time.monotonic() - began < 3
    finally:
        server.stop()                       # nothing left to do once stopped above
    assert code == 0, server.log()
    wait_for(lambda: all(map(is_gone, family)), what='every process of the server gone')
    assert 'Stopping parent process' in server.log() and not logged_errors(server.log()), server.log()


def test_manage_works_on_a_new_or_restored_data_directory(tmp_path):
    """Django's checks want the data directory's tmp/ (FILE_UPLOAD_TEMP_DIR), which only serve made."""
    env = {key: value for key, value in os.environ.items() if key != 'DATABASE_URL'}
    result = subprocess.run([sys.executable, '-m', 'oaio.server.cli', 'manage', '--data', str(tmp_path / 'new'),
                             'showmigrations', 'oaio'], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert '0001_initial' in result.stdout
