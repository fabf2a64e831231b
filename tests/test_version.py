"""``oaio --version`` and ``oaio-server --version`` name the installed release and exit 0."""
import importlib.metadata
import shutil
import subprocess
import sys

import pytest


@pytest.mark.parametrize('module', ['oaio.fs.cli', 'oaio.server.cli'])
def test_version_names_the_installed_release(module):
    result = subprocess.run([sys.executable, '-m', module, '--version'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"oaio {importlib.metadata.version('oaio')}\n"


@pytest.mark.parametrize('command', ['oaio', 'oaio-server'])
def test_the_commands_answer_version(command):
    if not shutil.which(command):
        pytest.skip(f'{command} is not on the PATH')
    result = subprocess.run([command, '--version'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith('oaio '), result.stderr
