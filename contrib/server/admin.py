"""The Django admin at /admin/: staff manage users, objects, subscriptions and see the logs."""
from django.contrib import admin

from .models import ActionLog, Blob, OaiObject, Subscription, Version


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    autocomplete_fields = ['user']


@admin.register(OaiObject)
class OaiObjectAdmin(admin.ModelAdmin):
    list_display = ['oaio_id', 'owner', 'csh_id', 'created']
    search_fields = ['oaio_id', 'owner__username']
    readonly_fields = ['head', 'created']
    inlines = [SubscriptionInline]


@admin.register(Version)
class VersionAdmin(admin.ModelAdmin):
    list_display = ['oai_object', 'stamp', 'server_stamp', 'user', 'device_id', 'app_id']
    search_fields = ['oai_object__oaio_id', 'stamp']
    readonly_fields = ['oai_object', 'stamp', 'server_stamp', 'values', 'files', 'user', 'device_id', 'app_id']


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ['oai_object', 'user', 'access_right']
    list_filter = ['access_right']
    search_fields = ['oai_object__oaio_id', 'user__username']


@admin.register(Blob)
class BlobAdmin(admin.ModelAdmin):
    list_display = ['sha256', 'size', 'stored']
    search_fields = ['sha256']


@admin.register(ActionLog)
class ActionLogAdmin(admin.ModelAdmin):
    list_display = ['when', 'user', 'action', 'oaio_id', 'device_id', 'app_id']
    list_filter = ['action']
    search_fields = ['oaio_id', 'user__username']
