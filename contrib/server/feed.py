"""The change feed: what changed for a user since a cursor (queries only; see longpoll.py for HTTP).

A cursor is the ``seq`` of the last change row a client has seen. Without a cursor the answer is
a snapshot of every subscribed object; with one it is built from the change rows after it, so its
cost grows with the number of changes, not of objects.
"""
from django.conf import settings
from django.db import close_old_connections
from django.db.models import Max

from .errors import InvalidInput
from .models import Change, OaiObject, Subscription, Version
from .objects import WITHOUT_PATHS, delta_of, has_head, head_manifests, manifest, object_dict

MAX_CURSOR = 2 ** 63 - 1


def parse_cursor(text: str | None) -> int | None:
    """The cursor of ``?since=``: None for a snapshot (absent or empty), else a non-negative int."""
    if not text:
        return None
    # isascii(): str.isdigit() also accepts '９' and '²' (the latter then breaks int(): a 500)
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_CURSOR:
        raise InvalidInput(f'since must be a cursor from a previous answer, got {text[:40]!r}')
    return int(text)


def _entry(sub: Subscription, files: dict) -> dict:
    head = sub.oai_object.head
    return {'oaio': object_dict(head, sub.oai_object.csh_id, sub.access_right, files), 'files': files,
            'owner': sub.oai_object.owner.username}


def _delta_entry(sub: Subscription, base: dict | None) -> dict:
    """An entry for a client that takes files as deltas (``files=delta``): the head's values without
    ``_file_paths`` (``file_paths`` says whether it has the key), and what the head changed against
    the version before it (``files_base``: its stamp; '' when the head is the first version), or
    with ``base`` (a snapshot) all its files against ''."""
    head = sub.oai_object.head
    entry = {'oaio': object_dict(head, sub.oai_object.csh_id, sub.access_right, WITHOUT_PATHS),
             'file_paths': head.has_file_paths, 'owner': sub.oai_object.owner.username}
    if base is not None:
        entry['files_base'], entry['files_delta'] = '', base
        return entry
    before = (Version.objects.filter(oai_object_id=head.oai_object_id, pk__lt=head.pk).order_by('-pk')
              .values_list('stamp', flat=True).first())
    entry['files_base'] = before or ''
    entry['files_delta'] = delta_of(head.oai_object_id, head.pk) if before else manifest(head.oai_object_id, head.pk)
    return entry


def _subscriptions(user):
    return Subscription.objects.filter(user=user).select_related(
        'oai_object__owner', 'oai_object__head__user', 'oai_object__head__oai_object')


def snapshot(user, delta: bool = False) -> dict:
    """Every object the user is subscribed to, and the cursor to continue from."""
    cursor = Change.objects.filter(user=user).aggregate(last=Max('seq'))['last'] or 0
    subs = [sub for sub in _subscriptions(user) if has_head(sub)]
    files = head_manifests(sub.oai_object_id for sub in subs)
    entries = [_delta_entry(sub, files[sub.oai_object_id]) if delta else _entry(sub, files[sub.oai_object_id])
               for sub in subs]
    return {'cursor': str(cursor), 'snapshot': True, 'more': False, 'changes': entries}


def changes_after(user, cursor: int, delta: bool = False) -> dict:
    """Objects changed for the user after ``cursor``: current heads, or tombstones for objects that
    were deleted or are no longer shared with the user. At most OAIO_FEED_PAGE rows per answer.
    An object without a head version is left out (objects.has_head), not reported gone."""
    page = settings.OAIO_FEED_PAGE
    rows = list(Change.objects.filter(user=user, seq__gt=cursor).order_by('seq').values_list('seq', 'oaio_id')[:page])
    if not rows:
        return {'cursor': str(cursor), 'snapshot': False, 'more': False, 'changes': []}
    ids = list(dict.fromkeys(oaio_id for _, oaio_id in rows))
    subs = {sub.oai_object.oaio_id: sub for sub in _subscriptions(user).filter(oai_object__oaio_id__in=ids)}
    existing = set(OaiObject.objects.filter(oaio_id__in=set(ids) - set(subs)).values_list('oaio_id', flat=True))
    live = {oaio_id: sub for oaio_id, sub in subs.items() if has_head(sub)}
    files = {} if delta else head_manifests(sub.oai_object_id for sub in live.values())
    entries = [(_delta_entry(live[oaio_id], None) if delta
                else _entry(live[oaio_id], files[live[oaio_id].oai_object_id])) if oaio_id in live else
               {'oaio_id': oaio_id, 'gone': 'unsubscribed' if oaio_id in existing else 'deleted'}
               for oaio_id in ids if oaio_id in live or oaio_id not in subs]
    return {'cursor': str(rows[-1][0]), 'snapshot': False, 'more': len(rows) == page, 'changes': entries}


def changes_for(user, cursor: int | None, delta: bool = False) -> dict:
    """Snapshot or incremental answer (``delta``: files as changes, see _delta_entry); runs in a
    worker thread, so it refreshes its connection."""
    close_old_connections()
    return snapshot(user, delta) if cursor is None else changes_after(user, cursor, delta)
