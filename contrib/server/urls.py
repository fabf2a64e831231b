"""URLs: the API under api/ (see docs/protocol.md), the Django admin under admin/, and the front page.

``api/changes/`` is served by :mod:`oaio.server.longpoll` in front of Django (see asgi.py).
"""
from django.contrib import admin
from django.urls import include, path, re_path

from . import pages, views

handler400 = 'oaio.server.errors.bad_request'
handler403 = 'oaio.server.errors.forbidden'
handler404 = 'oaio.server.errors.not_found'
handler500 = 'oaio.server.errors.server_error'

api = [
    path('login/', views.login),
    path('logout/', views.logout),
    path('current_stamp/', views.current_stamp),
    path('oaio_stampz/', views.oaio_stampz),
    path('register/', views.register),
    path('upload/', views.upload),
    path('delete/', views.delete),
    path('subscribe/', views.subscribe),
    re_path(r'^user_subz/(?P<oaio_id>[^/]*)/?$', views.user_subz),
    path('wipe_user/', views.wipe_user),
    re_path(r'^csh_args/(?P<csh_id>[^/]+)/?$', views.csh_args),
    path('blobs/missing/', views.blobs_missing),
    re_path(r'^manifest/(?P<oaio_id>[^/]+)/(?P<stamp>[^/]+)/?$', views.manifest),
    re_path(r'^files/(?P<oaio_id>[^/]+)/(?P<stamp>[^/]+)/(?P<path>.*)$', views.files),
]

urlpatterns = [
    path('', pages.home),
    path('admin/', admin.site.urls),
    path('api/', include(api)),
]
