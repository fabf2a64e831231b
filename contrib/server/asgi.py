"""ASGI entry point: the change feed's long poll in front of Django (see longpoll.py)."""
import os

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'oaio.server.settings')

from django.core.asgi import get_asgi_application  # noqa: E402  (needs the settings module set)

django_application = get_asgi_application()

from .longpoll import PATH as CHANGES_PATH, changes_app  # noqa: E402  (needs Django set up)


async def application(scope, receive, send):
    """Route ``api/changes/`` to the long-poll app and everything else to Django."""
    if scope['type'] == 'http' and scope['path'] == CHANGES_PATH:
        await changes_app(scope, receive, send)
    else:
        await django_application(scope, receive, send)
