"""The Django admin at /admin/: staff manage users, objects, subscriptions and see the logs.

Versions, blobs and the action log are read-only here: a version deleted on its own leaves its
object without a head (``on_delete=SET_NULL``) or a hole in its history, a blob deleted on its own
leaves versions naming content that is gone, and the log is the record of who did what. An object
is deleted whole, with its versions.
"""
from django.contrib import admin
from django.db import transaction

from .models import ActionLog, Blob, OaiObject, Subscription, Version
from .objects import record_admin_change


class FeedNotifyingAdmin(admin.ModelAdmin):
    """Changes made here reach the affected users' change feeds, as changes through the API do."""

    def affected(self, obj) -> tuple[str, list]:
        raise NotImplementedError

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            record_admin_change(request.user, *self.affected(obj))

    def delete_model(self, request, obj):
        with transaction.atomic():
            oaio_id, users = self.affected(obj)
            super().delete_model(request, obj)
            record_admin_change(request.user, oaio_id, users)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Staff may look, but nobody adds, changes or deletes rows here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    autocomplete_fields = ['user']


@admin.register(OaiObject)
class OaiObjectAdmin(FeedNotifyingAdmin):
    list_display = ['oaio_id', 'owner', 'csh_id', 'created']
    search_fields = ['oaio_id', 'owner__username']
    readonly_fields = ['oaio_id', 'owner', 'head', 'created']
    inlines = [SubscriptionInline]

    def has_add_permission(self, request):
        return False            # objects come from clients, with a first version

    def affected(self, obj):
        return obj.oaio_id, list(obj.subscriptions.values_list('user_id', flat=True))

    def save_formset(self, request, form, formset, change):
        with transaction.atomic():
            before = set(form.instance.subscriptions.values_list('user_id', 'access_right'))
            super().save_formset(request, form, formset, change)
            after = set(form.instance.subscriptions.values_list('user_id', 'access_right'))
            record_admin_change(request.user, form.instance.oaio_id, {uid for uid, _ in before ^ after})

    def get_deleted_objects(self, objs, request):
        """An object takes its versions with it, though no version can be deleted on its own."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed - {Version._meta.verbose_name}, protected


@admin.register(Version)
class VersionAdmin(ReadOnlyAdmin):
    list_display = ['oai_object', 'stamp', 'server_stamp', 'user', 'device_id', 'app_id']
    search_fields = ['oai_object__oaio_id', 'stamp']


@admin.register(Subscription)
class SubscriptionAdmin(FeedNotifyingAdmin):
    list_display = ['oai_object', 'user', 'access_right']
    list_filter = ['access_right']
    search_fields = ['oai_object__oaio_id', 'user__username']
    autocomplete_fields = ['oai_object', 'user']

    def affected(self, obj):
        return obj.oai_object.oaio_id, [obj.user_id]


@admin.register(Blob)
class BlobAdmin(ReadOnlyAdmin):
    list_display = ['sha256', 'size', 'stored']
    search_fields = ['sha256']


@admin.register(ActionLog)
class ActionLogAdmin(ReadOnlyAdmin):
    list_display = ['when', 'user', 'action', 'oaio_id', 'device_id', 'app_id']
    list_filter = ['action']
    search_fields = ['oaio_id', 'user__username']
