"""A hypothesis state machine: random sequences of file and values operations applied to an object
directory on the mount and to a plain reference directory, compared after every step; at the end
of every example the object is compared again on a second mount (another device of the user),
once it has synced.

One mount pair serves the whole run (mounting takes seconds): every example works in an object
directory of its own.
"""
from __future__ import annotations

import errno
import itertools
import json
import os
import shutil

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from oaio_testing import wait_for

NAMES = ['a.txt', 'b.txt', 'c.bin', 'sub/x.txt', 'sub/y.txt', 'sub/deeper/z.txt']
FOLDERS = ['sub', 'sub/deeper']
contents = st.binary(max_size=300)
value_dicts = st.dictionaries(st.sampled_from(['k', 'n', 'list', 'text']),
                              st.one_of(st.integers(-10**6, 10**6), st.text(max_size=20),
                                        st.lists(st.booleans(), max_size=3)), max_size=4)


def tree(root: str) -> dict[str, bytes | str]:
    """relative path → content (files) or 'dir' (folders); values.json left out."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        for name in dirs:
            found[os.path.normpath(os.path.join(relative, name))] = 'dir'
        for name in files:
            path = os.path.normpath(os.path.join(relative, name))
            if path != 'values.json':
                with open(os.path.join(folder, name), 'rb') as file:
                    found[path] = file.read()
    return found


def files_only(found: dict[str, bytes | str]) -> dict[str, bytes]:
    return {path: content for path, content in found.items() if content != 'dir'}


def has_nul(value) -> bool:
    if isinstance(value, str):
        return '\x00' in value
    if isinstance(value, dict):
        return any(has_nul(key) or has_nul(item) for key, item in value.items())
    return isinstance(value, list) and any(has_nul(item) for item in value)


def outcome(action) -> int | None:
    """None if ``action`` succeeded, else its errno."""
    try:
        action()
    except OSError as exc:
        return exc.errno
    return None


def test_random_operations_match_a_reference_directory_and_sync(mount, tmp_path):
    first = mount('alice', 'dev1')
    first.expect_log('values.json: not saved, the previous values stay: values must not contain NUL')
    second = mount('alice', 'dev2')
    reference_base = tmp_path / 'reference'
    numbers = itertools.count()
    steps: list[str] = []                   # every rule run, to check the run did something

    class DriveMachine(RuleBasedStateMachine):
        @initialize()
        def fresh_object(self):
            self.name = f'Obj{next(numbers)}'
            mounted = str(first / self.name)
            os.mkdir(mounted)
            try:
                with open(os.path.join(mounted, 'values.json')) as file:
                    self.values = json.load(file)
            except OSError as exc:
                raise AssertionError(f'{self.name}/values.json right after mkdir: {exc!r}; the root lists '
                                     f'{sorted(os.listdir(first.path))}') from exc
            self.mounted = mounted
            self.reference = str(reference_base / self.name)
            os.makedirs(self.reference)

        def both(self, operation, *relatives):
            """Apply ``operation(*paths)`` on the mount and on the reference: same outcome."""
            steps.append(operation.__name__)
            on_mount = outcome(lambda: operation(*(os.path.join(self.mounted, r) for r in relatives)))
            on_reference = outcome(lambda: operation(*(os.path.join(self.reference, r) for r in relatives)))
            assert on_mount == on_reference, f'{operation.__name__}{relatives}: mount {on_mount}, ' \
                                             f'reference {on_reference}'

        @rule(name=st.sampled_from(NAMES), data=contents)
        def write(self, name, data):
            def write(path):
                with open(path, 'wb') as file:
                    file.write(data)
            self.both(write, name)

        @rule(name=st.sampled_from(NAMES), data=contents)
        def append(self, name, data):
            def append(path):
                with open(path, 'ab') as file:
                    file.write(data)
            self.both(append, name)

        @rule(name=st.sampled_from(NAMES), size=st.integers(0, 600))
        def truncate(self, name, size):
            def truncate(path):
                os.truncate(path, size)
            self.both(truncate, name)

        @rule(name=st.sampled_from(NAMES), offset=st.integers(0, 400), data=contents)
        def write_at(self, name, offset, data):
            def write_at(path):
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.pwrite(fd, data, offset)
                finally:
                    os.close(fd)
            self.both(write_at, name)

        @rule(old=st.sampled_from(NAMES + FOLDERS), new=st.sampled_from(NAMES + FOLDERS))
        def rename(self, old, new):
            self.both(os.rename, old, new)

        @rule(name=st.sampled_from(NAMES))
        def unlink(self, name):
            self.both(os.unlink, name)

        @rule(folder=st.sampled_from(FOLDERS))
        def mkdir(self, folder):
            self.both(os.mkdir, folder)

        @rule(folder=st.sampled_from(FOLDERS))
        def rmdir(self, folder):
            self.both(os.rmdir, folder)

        @rule(new=value_dicts)
        def write_values(self, new):
            new = {'_name': self.name, **new}
            refused = has_nul(new)              # the protocol refuses NUL in values: EINVAL, values kept

            def write_values():
                with open(os.path.join(self.mounted, 'values.json'), 'w') as file:
                    json.dump(new, file)
            assert outcome(write_values) == (errno.EINVAL if refused else None)
            if not refused:
                self.values = new
            steps.append('write_values')

        @invariant()
        def same_tree(self):
            if not hasattr(self, 'mounted'):
                return
            assert tree(self.mounted) == tree(self.reference)
            with open(os.path.join(self.mounted, 'values.json')) as file:
                assert json.load(file) == self.values

        def teardown(self):
            if not hasattr(self, 'mounted'):
                return
            # an object holds files by path: an empty folder stays on its device, so the second
            # mount is compared by its files (and the folders they imply)
            expected = files_only(tree(self.reference))
            other = str(second / self.name)

            def synced():
                try:
                    with open(os.path.join(other, 'values.json')) as file:
                        values = json.load(file)
                    return files_only(tree(other)) == expected and values == self.values
                except (OSError, ValueError):
                    return False
            wait_for(synced, timeout=30, what=f'{self.name} on the second mount')
            shutil.rmtree(self.reference)

    run_state_machine_as_test(
        lambda: DriveMachine(),
        # no shrinking (each step is real I/O and a failing teardown waits for the sync), no example
        # database (a replay depends on the state of the mounts): the failing steps are printed
        settings=settings(max_examples=10, stateful_step_count=15, deadline=None, database=None,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck)))
    assert next(numbers) == 10, 'hypothesis ran fewer examples than asked'
    assert len(steps) > 50 and len(set(steps)) >= 8, steps
