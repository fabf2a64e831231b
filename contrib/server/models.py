"""The oaio server's schema: the whole of it, with the invariant of every table next to it.

- ``OaiObject``: one row per registered object. ``head`` is its newest version; an object row
  never exists without a head (both are created in one transaction by ``register/``).
- ``Version``: the linear history of an object. Stamps of one object are unique and increase
  with ``id``; a version row exists only once every chunk of its files is stored. Its ``values``
  are stored without ``_file_paths`` (``has_file_paths`` says whether the version had the key):
  answers derive it from the version's files, so a version costs what changed, not the size of
  the object.
- ``FileRow``: the files of an object's versions as runs: path ``path`` held this content from
  version ``since`` up to, not including, version ``until`` (Version ids; null: still in the head).
  A version's files are the rows with ``since <= id < until``; a new version closes the rows of
  the paths it changes or removes and adds rows for the ones it changes or adds — a one-file edit
  in an object of 10,000 files costs two row writes.
- ``Subscription``: who sees an object and with which right. The owner always holds ``C``.
  Right ``x`` is never stored: unsubscribing deletes the row.
- ``Blob``: one row per stored content, keyed by sha256. A row exists only after the content is
  durably in the blob storage under ``blob_name(sha256)``.
- ``BlobHolder``: user ``user`` sent the content of ``blob`` (a PUT of its bytes, verified). With
  ``ObjectBlob`` it is the proof of possession: a version may name a content by hash only if its
  uploader sent it or can read an object holding it — knowing a hash is not enough (security.md).
- ``ObjectBlob``: some version of ``oai_object`` names ``blob``; deleted with the object.
- ``StagedFile``: a file put under ``files/<id>/<stamp>/<path>`` before the version naming it
  exists (the original storage-host protocol). ``register/``/``upload/`` consume it.
- ``Change``: the change feed, fanned out per user: a row says "object ``oaio_id`` changed for
  ``user``" (new version, subscription change, deletion). ``seq`` increases with every commit, so
  a cursor is simply the last ``seq`` a client has seen.
- ``ActionLog``: who did what, from which device and app (append-only).
"""
from django.conf import settings
from django.db import models

MAX_ID_CHARS = 255


class OaiObject(models.Model):
    oaio_id = models.CharField(max_length=MAX_ID_CHARS, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name='oaio_objects')
    csh_id = models.CharField(max_length=64, blank=True)      # storage host of the attached files
    head = models.OneToOneField('Version', null=True, on_delete=models.SET_NULL, related_name='+')
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = 'oai object'

    def __str__(self) -> str:
        return self.oaio_id


class Version(models.Model):
    oai_object = models.ForeignKey(OaiObject, on_delete=models.CASCADE, related_name='versions')
    stamp = models.CharField(max_length=20)                   # client_stamp of this version
    server_stamp = models.CharField(max_length=20)            # server time when it was stored
    values = models.JSONField(default=dict)                   # without _file_paths (see FileRow)
    has_file_paths = models.BooleanField(default=False)       # the values had _file_paths
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name='+')
    device_id = models.CharField(max_length=128, blank=True)
    app_id = models.CharField(max_length=128, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=['oai_object', 'stamp'], name='unique_version_stamp')]

    def __str__(self) -> str:
        return f'{self.oai_object_id}@{self.stamp}'


class FileRow(models.Model):
    oai_object = models.ForeignKey(OaiObject, on_delete=models.CASCADE, related_name='+')
    path = models.TextField()
    since = models.BigIntegerField()                          # Version.id where this content appeared
    until = models.BigIntegerField(null=True)                 # Version.id where it changed or went; null: head
    sha256 = models.CharField(max_length=64)                  # the whole file's
    size = models.BigIntegerField()
    chunks = models.JSONField(null=True)                      # [[sha256, size], ...] of a chunked file

    class Meta:
        indexes = [models.Index(fields=['oai_object', 'until']), models.Index(fields=['oai_object', 'since'])]

    def entry(self) -> dict:
        """The manifest entry: ``{"sha256", "size"}``, plus ``"chunks"`` for a chunked file."""
        entry = {'sha256': self.sha256, 'size': self.size}
        if self.chunks:
            entry['chunks'] = self.chunks
        return entry


class Subscription(models.Model):
    RIGHTS = [('C', 'create (owner)'), ('D', 'delete and update'), ('U', 'update'), ('r', 'read')]
    oai_object = models.ForeignKey(OaiObject, on_delete=models.CASCADE, related_name='subscriptions')
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name='oaio_subscriptions')
    access_right = models.CharField(max_length=1, choices=RIGHTS)

    class Meta:
        constraints = [models.UniqueConstraint(fields=['oai_object', 'user'], name='unique_subscription')]

    def __str__(self) -> str:
        return f'{self.user} {self.access_right} {self.oai_object}'


class Blob(models.Model):
    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    stored = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.sha256


class BlobHolder(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name='+')
    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name='+')

    class Meta:
        constraints = [models.UniqueConstraint(fields=['user', 'blob'], name='unique_blob_holder')]


class ObjectBlob(models.Model):
    oai_object = models.ForeignKey(OaiObject, on_delete=models.CASCADE, related_name='+')
    blob = models.ForeignKey(Blob, on_delete=models.CASCADE, related_name='+')

    class Meta:
        constraints = [models.UniqueConstraint(fields=['oai_object', 'blob'], name='unique_object_blob')]
        indexes = [models.Index(fields=['blob', 'oai_object'])]


class StagedFile(models.Model):
    oaio_id = models.CharField(max_length=MAX_ID_CHARS)       # the object may not be registered yet
    stamp = models.CharField(max_length=20)
    path = models.CharField(max_length=4096)
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name='+')
    stored = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=['oaio_id', 'stamp'])]


class Change(models.Model):
    seq = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name='+')
    oaio_id = models.CharField(max_length=MAX_ID_CHARS)

    class Meta:
        indexes = [models.Index(fields=['user', 'seq'])]


class ActionLog(models.Model):
    when = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name='+')
    device_id = models.CharField(max_length=128, blank=True)
    app_id = models.CharField(max_length=128, blank=True)
    action = models.CharField(max_length=32)
    oaio_id = models.CharField(max_length=MAX_ID_CHARS, blank=True)
    detail = models.CharField(max_length=255, blank=True)

    def __str__(self) -> str:
        return f'{self.when:%Y-%m-%d %H:%M:%S} {self.user} {self.action} {self.oaio_id}'
