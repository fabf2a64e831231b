"""The mount's overlay (oaio.fs.objects.Overlay): object changes not yet handed to the client, each
numbered, dropped once the client has taken them, and kept on disk across a killed mount."""
from __future__ import annotations

import logging

from oaio.fs.objects import OVERLAY_FILE, Overlay


def noted() -> Overlay:
    return Overlay(new={'n1': 1, 'n2': 4}, values={'v1': (2, {'a': 1}), 'v2': (5, {'b': 2})}, removed={'r1': 3})


def test_an_empty_overlay_is_false():
    assert not Overlay()
    assert noted()
    assert Overlay(removed={'x': 1})


def test_drop_up_to_forgets_what_the_client_took():
    overlay = noted()
    overlay.drop_up_to(3)
    assert overlay.new == {'n2': 4}
    assert overlay.values == {'v2': (5, {'b': 2})}
    assert overlay.removed == {}
    overlay.drop_up_to(5)
    assert not overlay


def test_a_copy_is_independent():
    overlay = noted()
    copy = overlay.copy()
    copy.new['n3'] = 6
    copy.drop_up_to(10)
    assert overlay.new == {'n1': 1, 'n2': 4} and 'v1' in overlay.values


def test_saved_changes_come_back_after_a_restart(tmp_path):
    noted().save(str(tmp_path))
    again = Overlay.saved(str(tmp_path))
    assert (again.new, again.values, again.removed) == (noted().new, noted().values, noted().removed)


def test_nothing_to_keep_leaves_no_file(tmp_path):
    noted().save(str(tmp_path))
    Overlay().save(str(tmp_path))
    assert not (tmp_path / OVERLAY_FILE).exists()
    assert not Overlay.saved(str(tmp_path))


def test_an_unreadable_file_is_logged_and_an_empty_overlay_returned(tmp_path, caplog):
    (tmp_path / OVERLAY_FILE).write_text('{"new": ')
    with caplog.at_level(logging.ERROR, logger='oaio.fs.objects'):
        assert not Overlay.saved(str(tmp_path))
    assert OVERLAY_FILE in caplog.text and 'lost' in caplog.text
