"""The default cache holds edits not yet uploaded: it lives in the XDG state directory, not in
~/.cache (which cleaners empty), and an old one there moves over at first use."""
from __future__ import annotations

import fcntl
import os

import pytest

from oaio.fs.cli import default_cache


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('XDG_STATE_HOME', raising=False)
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
    return tmp_path


def test_the_default_cache_is_in_the_state_directory(home, capsys):
    assert default_cache('oaio.example.org', 'alice') == home / '.local/state/oaio/alice@oaio.example.org'
    assert not (home / '.local').exists() and capsys.readouterr().err == ''


def test_an_old_cache_moves_to_the_state_directory_once(home, capsys):
    old = home / '.cache/oaio/alice@oaio.example.org'
    (old / 'objz').mkdir(parents=True)
    (old / 'objz/pending.json').write_text('{}')
    new = home / '.local/state/oaio/alice@oaio.example.org'
    assert default_cache('oaio.example.org', 'alice') == new
    assert (new / 'objz/pending.json').read_text() == '{}' and not old.exists()
    assert capsys.readouterr().err == f'oaio: moved the cache (it holds edits not yet uploaded) from {old} to {new}\n'
    assert default_cache('oaio.example.org', 'alice') == new and capsys.readouterr().err == ''


def test_an_old_cache_in_use_stays_where_it_is(home):
    old = home / '.cache/oaio/alice@oaio.example.org'
    old.mkdir(parents=True)
    fd = os.open(old / '.lock', os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)      # as a running mount holds it
        assert default_cache('oaio.example.org', 'alice') == old
    finally:
        os.close(fd)
    assert default_cache('oaio.example.org', 'alice') == home / '.local/state/oaio/alice@oaio.example.org'


def test_xdg_state_home_is_honoured(home, monkeypatch):
    monkeypatch.setenv('XDG_STATE_HOME', str(home / 'state'))
    assert default_cache('oaio.example.org', 'alice') == home / 'state/oaio/alice@oaio.example.org'
