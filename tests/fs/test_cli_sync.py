"""`oaio sync`: one synchronization without a mount, with progress for long transfers."""
import hashlib
import os
import subprocess
import sys

from oaio.client import OaioClient

from oaio_testing import PASSWORD

MIB = 1024 * 1024


def run_sync(server, cache, *extra):
    password_file = cache.parent / f'{cache.name}.password'
    password_file.write_text(PASSWORD)
    os.chmod(password_file, 0o600)
    return subprocess.run([sys.executable, '-m', 'oaio.fs.cli', 'sync', server.host, '--user', 'alice',
                           '--cache', str(cache), '--password-file', str(password_file), '--device', cache.name,
                           *extra], capture_output=True, text=True, timeout=300)


def test_oaio_sync_downloads_with_progress(server, api, tmp_path):
    api('alice')
    content = os.urandom(MIB) * 24
    with OaioClient(server.host, {'username': 'alice', 'password': PASSWORD}, app_id='tests', device_id='up',
                    client_root=str(tmp_path / 'up')) as uploader:
        big = uploader.register_file('big.bin', file_content=content)
        assert uploader.error_message == ''

    result = run_sync(server, tmp_path / 'fresh', '--progress')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '1 objects, 0 pending'
    progress = [line for line in result.stderr.splitlines() if 'big.bin' in line]
    assert progress and progress[-1].startswith('↓ big.bin') and progress[-1].endswith('25.2/25.2 MB  100%')
    downloaded = tmp_path / 'fresh' / 'filez' / big.oaio_id / 'big.bin'
    assert hashlib.sha256(downloaded.read_bytes()).digest() == hashlib.sha256(content).digest()


def test_oaio_sync_reports_a_wrong_password(server, api, tmp_path):
    api('alice')
    cache = tmp_path / 'c'
    (tmp_path / 'c.password').write_text('wrong')
    os.chmod(tmp_path / 'c.password', 0o600)
    result = subprocess.run([sys.executable, '-m', 'oaio.fs.cli', 'sync', server.host, '--user', 'alice',
                             '--cache', str(cache), '--password-file', str(tmp_path / 'c.password')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 4
    assert result.stderr == "oaio: wrong user name or password for alice on " + server.host + "\n"
    assert result.stdout == ''

