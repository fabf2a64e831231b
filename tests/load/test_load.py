"""Load: 20 clients (OaioClient instances, one thread each, each a device of its own with a cache
of its own) sync 200 objects concurrently against one server for OAIO_LOAD_SECONDS (default 60 s).

Each client owns 10 of the 200 objects and keeps updating them (a counter per object); every
client synchronizes all 200. Checked: the server never answers 5xx nor logs an error, no
acknowledged update is lost (the server's head of every object holds the last counter its client
saw acknowledged by a successful sync, never less), and afterwards all clients hold the same
values as the server.

Runs on SQLite and, in contrib/test's PostgreSQL pass, on PostgreSQL.
"""
from __future__ import annotations

import os
import random
import re
import threading
import time

from oaio.client import OaioClient

from oaio_testing import PASSWORD

CLIENTS = 20
OBJECTS_PER_CLIENT = 10             # 200 objects
SECONDS = float(os.environ.get('OAIO_LOAD_SECONDS', '60'))
_5XX = re.compile(r'" 5\d\d ')


def test_20_clients_sync_200_objects_concurrently(server, api, tmp_path):
    session = api('load')
    clients = [OaioClient(server.host, {'username': 'load', 'password': PASSWORD}, app_id='tests',
                          device_id=f'dev{number}', client_root=str(tmp_path / f'client{number}'),
                          auto_sync=False) for number in range(CLIENTS)]
    acknowledged: dict[str, int] = {}          # oaio_id → highest counter a successful sync covered
    owned: list[list[str]] = [[] for _ in clients]
    failures: list[str] = []
    lock = threading.Lock()
    try:
        for number, client in enumerate(clients):
            for index in range(OBJECTS_PER_CLIENT):
                obj = client.register_object({'_name': f'c{number}-o{index}', 'counter': 0, 'owner': number})
                assert obj is not None, client.error_message
                owned[number].append(obj.oaio_id)

        start = threading.Barrier(CLIENTS)
        deadline = time.monotonic() + SECONDS + 5

        def work(number: int) -> None:
            client, rng = clients[number], random.Random(number)
            counters = {oaio_id: 0 for oaio_id in owned[number]}
            syncs = 0
            try:
                start.wait()
                end = time.monotonic() + SECONDS
                while time.monotonic() < end:
                    for oaio_id in rng.sample(owned[number], 3):
                        counters[oaio_id] += 1
                        client.update_object(oaio_id, {'_name': client.client_objectz[oaio_id].client_values['_name'],
                                                       'counter': counters[oaio_id], 'owner': number})
                    covered = dict(counters)
                    if client.synchronize_with_server_if_online():
                        syncs += 1
                        with lock:
                            for oaio_id, counter in covered.items():
                                acknowledged[oaio_id] = max(acknowledged.get(oaio_id, 0), counter)
                    time.sleep(rng.uniform(0, 0.2))
                if not syncs:
                    failures.append(f'client {number}: no sync succeeded ({client.error_message})')
            except BaseException as exc:        # reported by the test thread
                failures.append(f'client {number}: {exc!r}')

        threads = [threading.Thread(target=work, args=(number,)) for number in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline + 120 - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads), 'a client hung'
        assert not failures, '\n'.join(failures)

        # everyone syncs until nothing changes any more: the same objects everywhere
        def snapshot(client):
            return {oaio_id: obj.client_values.get('counter') for oaio_id, obj in client.client_objectz.items()}
        for _ in range(5):
            for client in clients:
                assert client.synchronize_with_server_if_online(), client.error_message
            if all(snapshot(client) == snapshot(clients[0]) for client in clients):
                break
        heads = {obj['oaio_id']: obj for obj in session.get('oaio_stampz/').json()}
        assert len(heads) == CLIENTS * OBJECTS_PER_CLIENT
        lost = {oaio_id: (counter, heads[oaio_id]['client_values'].get('counter'))
                for oaio_id, counter in acknowledged.items()
                if heads[oaio_id]['client_values'].get('counter') != counter}
        assert not lost, f'acknowledged counters not (exactly) on the server: {lost}'
        on_server = {oaio_id: head['client_values'].get('counter') for oaio_id, head in heads.items()}
        for number, client in enumerate(clients):
            assert snapshot(client) == on_server, f'client {number} did not converge'
            assert not any(client.sync_state(oaio_id) == 'conflict' for oaio_id in on_server)
    finally:
        for client in clients:
            client.close()
    log = server.log()
    assert not _5XX.search(log), 'the server answered 5xx:\n' + '\n'.join(
        line for line in log.splitlines() if _5XX.search(line))
