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
