"""Django app configuration of the oaio server."""
from django.apps import AppConfig


class OaioServerConfig(AppConfig):
    """The oaio server app (label ``oaio``)."""

    name = 'oaio.server'
    label = 'oaio'
    verbose_name = 'oaio objects'
    default_auto_field = 'django.db.models.BigAutoField'
