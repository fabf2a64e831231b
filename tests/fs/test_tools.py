"""The tools people use on the mount — cp, rsync, mv, rm, cat, echo, truncate, vim, sed, nano,
python — each checked on the mount and on the server (content and version history)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

# scratch files of the tools used here: none may ever be part of a version on the server
TEMP_FILE = re.compile(r'(^|/)(4913|\.[^/]*\.sw[a-p]|\.[^/]*\.swx|[^/]*~|sed[A-Za-z0-9]{6}|\.fuse_hidden[^/]*)$')


def run(*command: str, cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f'{command} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}'
    return result.stdout


def make_tree(root: Path) -> dict[str, bytes]:
    """A small tree of files (nested, binary, empty, odd names); returns path → content."""
    files = {
        'readme.txt': b'hello tree\n',
        'empty': b'',
        'with space & ümlaut.md': 'Grüße\n'.encode(),
        'bin/data.bin': bytes(range(256)) * 300,
        'bin/deep/er/leaf.txt': b'leaf\n' * 1000,
        '.hidden': b'dot file\n',
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return files


def tree_of(root: Path) -> dict[str, bytes]:
    """path → content of every file under ``root``, values.json left out."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob('*'))
            if path.is_file() and path.relative_to(root).as_posix() != 'values.json'}


def new_object(m, name: str) -> dict:
    os.mkdir(m / name)
    return m.remote.wait_object(name)


def check_history(m, oaio_id: str, files: set[str] | None = None) -> list[dict]:
    """No version of the object ever held a tool's scratch file; with ``files``: every version
    after the first one that has them holds exactly these (save-by-rename is no delete + create)."""
    history = m.remote.history(oaio_id)
    for version in history:
        paths = version['values'].get('_file_paths', [])
        assert not [path for path in paths if TEMP_FILE.search(path)], f'a scratch file was uploaded: {history}'
        assert set(version['files']) == set(paths)
    if files is not None:
        with_files = [version for version in history if set(version['values'].get('_file_paths', [])) == files]
        assert with_files, history
        later = history[history.index(with_files[0]):]
        assert all(set(version['values'].get('_file_paths', [])) == files for version in later), history
    return history


# copying trees ------------------------------------------------------------------------------

def test_cp_r_of_a_tree_into_an_object(mount, tmp_path):
    m = mount('alice')
    new_object(m, 'Tree')
    source = tmp_path / 'source'
    expected = make_tree(source)
    run('cp', '-r', f'{source}/.', str(m / 'Tree'))
    run('diff', '-r', '-x', 'values.json', str(source), str(m / 'Tree'))
    assert tree_of(m / 'Tree') == expected
    obj = m.remote.wait_files('Tree', expected)
    check_history(m, obj['oaio_id'])

    run('cp', '-r', str(m / 'Tree'), str(tmp_path / 'back'))               # and out again
    assert tree_of(tmp_path / 'back') == expected
    assert json.loads((tmp_path / 'back/values.json').read_text()) == {'_name': 'Tree'}


def test_rsync_in_and_back_out(mount, tmp_path):
    m = mount('alice')
    new_object(m, 'Synced')
    source = tmp_path / 'source'
    expected = make_tree(source)
    os.utime(source / 'readme.txt', (1_500_000_000, 1_500_000_000))
    run('rsync', '-a', f'{source}/', f'{m / "Synced"}/')
    assert tree_of(m / 'Synced') == expected
    assert os.stat(m / 'Synced/readme.txt').st_mtime == 1_500_000_000
    changes = run('rsync', '-ai', '--dry-run', f'{source}/', f'{m / "Synced"}/')
    assert not [line for line in changes.splitlines() if line.startswith(('>', 'c'))], changes   # nothing to copy again

    run('rsync', '-a', '--exclude', 'values.json', f'{m / "Synced"}/', f'{tmp_path / "out"}/')
    run('diff', '-r', str(source), str(tmp_path / 'out'))
    assert os.stat(tmp_path / 'out/readme.txt').st_mtime == 1_500_000_000
    m.remote.wait_files('Synced', expected)

    (source / 'readme.txt').write_bytes(b'changed by rsync\n')              # an update of one file
    os.remove(source / 'empty')
    run('rsync', '-a', '--delete', f'{source}/', f'{m / "Synced"}/', '--exclude', 'values.json')
    expected = tree_of(source)
    assert tree_of(m / 'Synced') == expected
    m.remote.wait_files('Synced', expected)
    assert json.loads((m / 'Synced/values.json').read_text()) == {'_name': 'Synced'}


# moving, removing, shell ---------------------------------------------------------------------

def test_mv_in_within_between_and_out(mount, tmp_path):
    m = mount('alice')
    new_object(m, 'A')
    new_object(m, 'B')
    (tmp_path / 'outside.txt').write_text('from outside\n')
    run('mv', str(tmp_path / 'outside.txt'), str(m / 'A/inside.txt'))           # across filesystems
    assert not (tmp_path / 'outside.txt').exists()
    run('mv', str(m / 'A/inside.txt'), str(m / 'A/renamed.txt'))
    os.makedirs(m / 'A/folder/sub')
    (m / 'A/folder/sub/f.txt').write_text('in a folder\n')
    run('mv', str(m / 'A/folder'), str(m / 'B/'))                               # a folder to another object
    assert sorted(os.listdir(m / 'A')) == ['renamed.txt', 'values.json']
    assert (m / 'B/folder/sub/f.txt').read_text() == 'in a folder\n'
    m.remote.wait_files('A', {'renamed.txt': b'from outside\n'})
    m.remote.wait_files('B', {'folder/sub/f.txt': b'in a folder\n'})

    run('mv', str(m / 'B/folder/sub/f.txt'), str(tmp_path / 'out.txt'))         # out of the mount
    assert (tmp_path / 'out.txt').read_text() == 'in a folder\n'
    m.remote.wait_files('B', {})


def test_rm_r_of_a_folder_and_of_an_object(mount, tmp_path):
    m = mount('alice')
    new_object(m, 'Doomed')
    expected = make_tree(m / 'Doomed')
    m.remote.wait_files('Doomed', expected)
    run('rm', '-r', str(m / 'Doomed/bin'))
    expected = {path: content for path, content in expected.items() if not path.startswith('bin/')}
    assert tree_of(m / 'Doomed') == expected
    m.remote.wait_files('Doomed', expected)

    run('rm', '-rf', str(m / 'Doomed'))
    assert os.listdir(m.path) == []
    m.remote.wait_gone('Doomed')


def test_cat_echo_append_and_truncate(mount):
    m = mount('alice')
    new_object(m, 'Shell')
    shell = m / 'Shell'
    run('bash', '-c', 'echo first > log.txt && echo second >> log.txt && echo third >> log.txt', cwd=shell)
    assert run('cat', 'log.txt', cwd=shell) == 'first\nsecond\nthird\n'
    m.remote.wait_files('Shell', {'log.txt': b'first\nsecond\nthird\n'})

    run('truncate', '-s', '5', 'log.txt', cwd=shell)
    assert run('cat', 'log.txt', cwd=shell) == 'first'
    run('truncate', '-s', '+3', 'log.txt', cwd=shell)
    assert (shell / 'log.txt').read_bytes() == b'first\0\0\0'
    run('bash', '-c', 'echo more >> log.txt', cwd=shell)
    m.remote.wait_files('Shell', {'log.txt': b'first\0\0\0more\n'})


# editors ------------------------------------------------------------------------------------

def vim(*commands: str, path: Path) -> None:
    """vim in silent Ex mode, no vimrc; backupskip cleared since the mount lives under /tmp."""
    arguments = ['vim', '-es', '-N', '-u', 'NONE', '-i', 'NONE', '-c', 'set backupskip= directory=.']
    for command in commands:
        arguments += ['-c', command]
    run(*arguments, '-c', 'wq', path.name, cwd=path.parent)


@pytest.mark.parametrize('backup', ['set backupcopy=auto', 'set backupcopy=no backup', 'set backupcopy=yes'])
def test_vim_edits_a_file(mount, backup):
    m = mount('alice')
    new_object(m, 'Vim')
    path = m / 'Vim/notes.txt'
    path.write_text('line one\nline two\n')
    m.remote.wait_files('Vim', {'notes.txt': b'line one\nline two\n'})
    vim(backup, '%s/two/2/', path=path)
    vim(backup, 'normal Gothree', path=path)
    assert path.read_text() == 'line one\nline 2\nthree\n'
    kept_backup = ['notes.txt~'] if 'backup' in backup.split() else []       # vim's, local only
    assert sorted(os.listdir(m / 'Vim')) == sorted(['notes.txt', 'values.json'] + kept_backup)
    obj = m.remote.wait_files('Vim', {'notes.txt': b'line one\nline 2\nthree\n'})
    check_history(m, obj['oaio_id'], {'notes.txt'})


def test_vim_edits_values_json(mount):
    m = mount('alice')
    new_object(m, 'Values')
    values = m / 'Values/values.json'
    (m / 'Values/file.txt').write_text('attached')
    m.remote.wait_files('Values', {'file.txt': b'attached'})
    vim('%s/"_name": "Values"/"_name": "Values", "color": "blue"/', path=values)
    assert json.loads(values.read_text()) == {'_name': 'Values', 'color': 'blue'}
    vim('%s/blue/green/', path=values)
    assert json.loads(values.read_text()) == {'_name': 'Values', 'color': 'green'}
    assert sorted(os.listdir(m / 'Values')) == ['file.txt', 'values.json']
    obj = m.remote.wait_object('Values', lambda obj: obj['client_values'].get('color') == 'green')
    assert obj['client_values'] == {'_name': 'Values', 'color': 'green', '_file_paths': ['file.txt']}
    check_history(m, obj['oaio_id'], {'file.txt'})


def test_sed_i_on_a_file_and_on_values_json(mount):
    m = mount('alice')
    new_object(m, 'Sed')
    (m / 'Sed/conf.ini').write_text('key=old\nother=1\n')
    m.remote.wait_files('Sed', {'conf.ini': b'key=old\nother=1\n'})
    run('sed', '-i', 's/old/new/', 'conf.ini', cwd=m / 'Sed')
    assert (m / 'Sed/conf.ini').read_text() == 'key=new\nother=1\n'
    run('sed', '-i', 's/"Sed"/"Sed", "size": 3/', 'values.json', cwd=m / 'Sed')
    assert json.loads((m / 'Sed/values.json').read_text()) == {'_name': 'Sed', 'size': 3}
    assert sorted(os.listdir(m / 'Sed')) == ['conf.ini', 'values.json']
    obj = m.remote.wait_object('Sed', lambda obj: obj['client_values'].get('size') == 3
                               and m.remote.files(obj) == {'conf.ini': b'key=new\nother=1\n'})
    assert obj['client_values'] == {'_name': 'Sed', 'size': 3, '_file_paths': ['conf.ini']}
    check_history(m, obj['oaio_id'], {'conf.ini'})


def test_nano_in_tmux(mount):
    if not (shutil.which('tmux') and shutil.which('nano')):
        pytest.skip('tmux and nano are not installed (contrib/test installs them)')
    m = mount('alice')
    new_object(m, 'Nano')
    path = m / 'Nano/text.txt'
    path.write_text('written by python\n')
    m.remote.wait_files('Nano', {'text.txt': b'written by python\n'})
    socket = f'oaio-test-{uuid.uuid4().hex[:8]}'

    def tmux(*args: str) -> str:
        return run('tmux', '-L', socket, *args)

    def screen() -> str:
        return tmux('capture-pane', '-p', '-t', 'edit')

    tmux('new-session', '-d', '-s', 'edit', '-x', '120', '-y', '30', '-c', str(path.parent),
         f'nano --ignorercfiles {path.name}')
    try:
        m.wait_for(lambda: 'written by python' in screen(), timeout=30, what='nano shows the file')
        tmux('send-keys', '-t', 'edit', 'typed in nano ')
        m.wait_for(lambda: 'typed in nano written by python' in screen(), timeout=30, what='nano shows the typing')
        tmux('send-keys', '-t', 'edit', 'C-o')
        m.wait_for(lambda: 'File Name to Write' in screen(), timeout=30, what="nano's save prompt")
        tmux('send-keys', '-t', 'edit', 'Enter')
        m.wait_for(lambda: 'Wrote' in screen(), timeout=30, what='nano wrote the file')
        tmux('send-keys', '-t', 'edit', 'C-x')
        m.wait_for(lambda: subprocess.run(['tmux', '-L', socket, 'has-session', '-t', 'edit'],
                                          capture_output=True).returncode != 0, timeout=30, what='nano quit')
    finally:
        subprocess.run(['tmux', '-L', socket, 'kill-server'], capture_output=True)
    assert path.read_text() == 'typed in nano written by python\n'
    assert sorted(os.listdir(m / 'Nano')) == ['text.txt', 'values.json']
    obj = m.remote.wait_files('Nano', {'text.txt': b'typed in nano written by python\n'})
    check_history(m, obj['oaio_id'], {'text.txt'})


def test_python_writes(mount):
    m = mount('alice')
    new_object(m, 'Py')
    root = m / 'Py'
    (root / 'text.txt').write_text('Zeile 1\n', encoding='utf-8')
    with open(root / 'text.txt', 'a', encoding='utf-8') as file:
        file.write('Zeile 2\n')
    with open(root / 'rw.bin', 'w+b') as file:
        file.write(b'0123456789')
        file.seek(3)
        file.write(b'abc')
        file.seek(0)
        assert file.read() == b'012abc6789'
    fd = os.open(root / 'low.bin', os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o640)
    try:
        os.pwrite(fd, b'end', 5)
        os.pwrite(fd, b'start', 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    shutil.copy2(root / 'text.txt', root / 'copy.txt')
    with open(root / 'values.json', 'w') as file:
        json.dump({'_name': 'Py', 'written': 'by json.dump'}, file)
    expected = {'text.txt': 'Zeile 1\nZeile 2\n'.encode(), 'rw.bin': b'012abc6789', 'low.bin': b'startend',
                'copy.txt': 'Zeile 1\nZeile 2\n'.encode()}
    assert tree_of(root) == expected
    assert json.loads((root / 'values.json').read_text()) == {'_name': 'Py', 'written': 'by json.dump'}
    obj = m.remote.wait_files('Py', expected)
    m.remote.wait_object('Py', lambda obj: obj['client_values'].get('written') == 'by json.dump')
    check_history(m, obj['oaio_id'])


# debouncing --------------------------------------------------------------------------------

def test_a_burst_of_writes_becomes_few_versions(mount):
    m = mount('alice')
    oaio_id = new_object(m, 'Burst')['oaio_id']
    (m / 'Burst/counter.txt').write_text('start\n')
    m.remote.wait_files('Burst', {'counter.txt': b'start\n'})
    versions_before, cursor_before = len(m.remote.history(oaio_id)), m.remote.cursor()

    for number in range(50):
        with open(m / 'Burst/counter.txt', 'a') as file:
            file.write(f'{number}\n')
    expected = 'start\n' + ''.join(f'{number}\n' for number in range(50))
    assert (m / 'Burst/counter.txt').read_text() == expected
    m.remote.wait_files('Burst', {'counter.txt': expected.encode()})

    new_versions = len(m.remote.history(oaio_id)) - versions_before
    assert 1 <= new_versions <= 5, f'50 writes made {new_versions} versions'
    assert m.remote.cursor() - cursor_before == new_versions
