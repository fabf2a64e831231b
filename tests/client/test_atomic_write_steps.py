"""A crash at every step of the store's atomic write (``oaio.client.store.write_atomic``): the next
client finds the old or the new record, never a partial one, and no temp file stays behind.

Each case runs a subprocess that saves an old record, then wraps ``os.fsync``/``os.chmod``/``os.replace``
(and the temp file's ``write``) so that the process ends with ``os._exit`` at one step of saving a new
record — as abruptly as SIGKILL: no ``finally``, no cleanup. (A process crash, not a power cut: the
page cache survives, so what was renamed is visible even before the directory fsync.)
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import pytest

from oaio.client.store import LocalStore

CRASHER = textwrap.dedent('''
    import hashlib, io, json, os, sys
    from oaio.client.model import OaiObject
    from oaio.client.store import LocalStore, ObjectRecord

    root, function, when, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

    def record(version, size):
        values = {'version': version, 'pad': version * size}
        values['check'] = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
        return ObjectRecord(obj=OaiObject('object-1', client_stamp=f'2026{len(version):016d}',
                                          client_values=values))

    store = LocalStore(root)
    store.save_record(record('old', 1000))
    store.save_state({'cursor': '1', 'pending_deletes': ['old']})
    calls = {}

    def hook(name, real):
        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == nth and when == 'before':
                os._exit(77)
            result = real(*args, **kwargs)
            if calls[name] == nth and when == 'after':
                os._exit(77)
            return result
        return wrapper

    if function == 'write':             # half of the temp file written, then the crash
        real_fdopen = os.fdopen
        def fdopen(fd, *args, **kwargs):
            file = real_fdopen(fd, *args, **kwargs)
            real_write = file.write
            def write(data):
                real_write(data[:len(data) // 2])
                file.flush()
                os._exit(77)
            file.write = write
            return file
        os.fdopen = fdopen
    else:
        setattr(os, function, hook(function, getattr(os, function)))
    if sys.argv[5] == 'record':
        store.save_record(record('new', 100000))
    else:
        store.save_state({'cursor': '2', 'pending_deletes': ['new'] * 1000})
    os._exit(0)                         # the step was never reached
''')

# (function, before/after, which call) in the order write_atomic makes them; the last one is the
# fsync of the directory
STEPS = [
    ('write', 'during', 1, 'old'),          # temp file half written
    ('fsync', 'before', 1, 'old'),          # temp file written, not yet fsynced
    ('fsync', 'after', 1, 'old'),           # temp file fsynced
    ('chmod', 'before', 1, 'old'),
    ('replace', 'before', 1, 'old'),        # about to rename
    ('replace', 'after', 1, 'new'),         # renamed, directory not yet fsynced
    ('fsync', 'before', 2, 'new'),          # the directory fsync
    ('fsync', 'after', 2, 'new'),
]


@pytest.mark.parametrize('what', ['record', 'state'])
@pytest.mark.parametrize('function,when,nth,expected', STEPS,
                         ids=[f'{when}-{function}-{nth}' for function, when, nth, _ in STEPS])
def test_crash_at_each_step_of_write_atomic_leaves_old_or_new(tmp_path, what, function, when, nth, expected):
    root = tmp_path / 'store'
    result = subprocess.run([sys.executable, '-c', CRASHER, str(root), function, when, str(nth), what],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 77, f'the crash was not injected ({result.returncode}):\n{result.stderr}'

    store = LocalStore(root)           # the next client: takes the lock, removes stale temp files
    try:
        if what == 'record':
            records = store.load_records()
            assert not list((root / 'objz').glob('*.unreadable')), 'a partial record'
            assert list(records) == ['object-1']
            values = dict(records['object-1'].obj.client_values)
            check = values.pop('check')
            assert hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest() == check
            assert values['version'] == expected
            assert len(values['pad']) == (1000 if expected == 'old' else 100000) * 3
        else:
            state = store.load_state()
            assert not (root / 'state.json.unreadable').exists()
            assert state == ({'cursor': '1', 'pending_deletes': ['old']} if expected == 'old'
                             else {'cursor': '2', 'pending_deletes': ['new'] * 1000}), str(state)[:200]
        leftovers = [path.name for folder in (root, root / 'objz') for path in folder.glob('.tmp-*')]
        assert not leftovers
    finally:
        store.close()
