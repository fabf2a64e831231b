"""The mount's log, CACHE/oaio.log, is rotated: it never grows past its limit, and old logs are kept."""
import subprocess
import sys

from oaio.fs import cli


def test_the_log_rotates_and_keeps_three_old_ones(tmp_path):
    assert (cli.LOG_BYTES, cli.LOG_BACKUPS) == (10 * 1024 * 1024, 3)
    script = ('import logging, sys; from pathlib import Path; from oaio.fs import cli; cli.LOG_BYTES = 2000; '
              'cli.setup_logging(Path(sys.argv[1]), False); '
              '[logging.getLogger("oaio").info("record %d %s", n, "x" * 100) for n in range(200)]')
    result = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'oaio.log')], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stderr == '', result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ['oaio.log', 'oaio.log.1', 'oaio.log.2', 'oaio.log.3']
    assert all(path.stat().st_size <= 2000 for path in tmp_path.iterdir())
    assert 'record 199 ' in (tmp_path / 'oaio.log').read_text()


def test_sighup_reopens_the_log_and_keeps_the_drive(mount):
    """logrotate moves oaio.log away and sends SIGHUP: the mount writes a new oaio.log and stays
    mounted (SIGHUP used to unmount the drive)."""
    import os
    import signal
    drive = mount('alice')
    os.mkdir(drive / 'Notes')
    drive.remote.wait_object('Notes')
    moved = drive.log_path.with_name('oaio.log.1')
    os.rename(drive.log_path, moved)
    drive.process.send_signal(signal.SIGHUP)
    drive.wait_for(lambda: 'SIGHUP: log files reopened' in drive.log(), what='a new oaio.log after SIGHUP')
    assert os.path.ismount(drive.path)
    (drive / 'Notes' / 'after.txt').write_text('written after the SIGHUP')
    drive.remote.wait_files('Notes', {'after.txt': b'written after the SIGHUP'})
    assert 'SIGHUP' not in moved.read_text()
