"""Server-rendered pages for people with a browser (the API is for clients): so far the front page."""
import importlib.metadata

from django.shortcuts import render

from .errors import MethodNotAllowed


def home(request):
    """``/``: what this server is, its version, and where to go (the admin's "View site" link)."""
    if request.method not in ('GET', 'HEAD'):
        raise MethodNotAllowed('/ answers GET')
    return render(request, 'oaio/home.html', {'version': importlib.metadata.version('oaio')})
