"""What the server offers its operator: the health check, the metrics, the front page, workers."""
import requests


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
