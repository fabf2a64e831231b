"""``oaio mount`` / ``oaio sync --password-file F`` refuse a password file that the group or others
may read (or write), with a one-line error, before asking the server anything or mounting."""
import os

import pytest

from oaio_testing import PASSWORD, oaio


@pytest.mark.parametrize('mode', [0o644, 0o640, 0o604, 0o620, 0o660])
@pytest.mark.parametrize('command', ['mount', 'sync'])
def test_a_loose_password_file_is_refused(server, tmp_path, mode, command):
    server.adduser('alice')
    password_file = tmp_path / 'password'
    password_file.write_text(PASSWORD + '\n')
    os.chmod(password_file, mode)
    mountpoint = tmp_path / 'mnt'
    mountpoint.mkdir()
    target = [str(mountpoint)] if command == 'mount' else []
    result = oaio(command, server.host, *target, '--user', 'alice', '--password-file', str(password_file),
                  '--cache', str(tmp_path / 'cache'))
    assert result.returncode == 1, result
    assert result.stderr.count('\n') == 1 and 'can be read by others' in result.stderr, result.stderr
    assert f'{mode:o}' in result.stderr and 'chmod 600' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not os.path.ismount(mountpoint) and os.listdir(mountpoint) == []
    assert 'login' not in server.log().split('Application startup complete')[-1]      # never asked the server
