"""contrib/systemd: both units pass ``systemd-analyze verify`` (the mount's as a user unit, one instance
of it; the server's as a system unit), with no warning either."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / 'contrib' / 'systemd'
SERVER_COMMAND = '/usr/local/bin/oaio-server'

pytestmark = pytest.mark.skipif(not shutil.which('systemd-analyze'), reason='no systemd-analyze')


def verify(*args: str, env: dict | None = None) -> str:
    result = subprocess.run(['systemd-analyze', *args], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr            # a setting it ignores is a warning, not a failure


def test_the_mount_user_unit_verifies(tmp_path):
    (tmp_path / 'units').mkdir()
    shutil.copy(UNITS / 'oaio-mount@.service', tmp_path / 'units')
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))    # the user manager wants one, even to verify
    assert verify('--user', 'verify', '--man=no', str(tmp_path / 'units' / 'oaio-mount@home.service'), env=env) == ''


def test_the_server_system_unit_verifies(tmp_path):
    unit = (UNITS / 'oaio-server.service').read_text()
    assert f'ExecStart={SERVER_COMMAND} ' in unit
    if not os.access(SERVER_COMMAND, os.X_OK):        # verify checks the command exists: use the installed one
        installed = shutil.which('oaio-server')
        if not installed:
            pytest.skip(f'no {SERVER_COMMAND} and no oaio-server on the PATH')
        unit = unit.replace(f'ExecStart={SERVER_COMMAND} ', f'ExecStart={installed} ')
    (tmp_path / 'oaio-server.service').write_text(unit)
    assert verify('verify', '--man=no', str(tmp_path / 'oaio-server.service')) == ''


def test_the_mount_units_header_writes_a_configuration_systemd_reads_as_meant(tmp_path):
    """systemd takes an EnvironmentFile's lines as they are: no %h, no comment after a value."""
    header = [line[4:] for line in (UNITS / 'oaio-mount@.service').read_text().splitlines() if line.startswith('#   ')]
    start = next(i for i, line in enumerate(header) if line.startswith('cat > ~/.config/oaio/home.conf'))
    script = '\n'.join(['mkdir -p ~/.config/oaio', *header[start:header.index('CONF', start) + 1]])
    subprocess.run(['bash', '-euc', script], check=True, env=dict(os.environ, HOME=str(tmp_path)))
    written = (tmp_path / '.config' / 'oaio' / 'home.conf').read_text()
    settings = dict(line.split('=', 1) for line in written.splitlines())
    assert set(settings) == {'OAIO_SERVER', 'OAIO_MOUNTPOINT', 'OAIO_USER', 'OAIO_PASSWORD_FILE'}
    assert settings['OAIO_MOUNTPOINT'] == f'{tmp_path}/oaio'
    assert settings['OAIO_PASSWORD_FILE'] == f'{tmp_path}/.config/oaio/home.password'
    assert not any('%' in value or '#' in value or ' ' in value for value in settings.values()), settings
