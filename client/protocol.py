"""``oaio.client.protocol``: :mod:`oaio.protocol` under its older name -- the same objects, re-exported.

The protocol lives outside the client package so that importing it imports neither the client nor
``requests`` (the server and the mount's limits need only the standard library); the client's modules
and older callers keep writing ``from oaio.client import protocol as p``.
"""
from oaio.protocol import *  # noqa: F403 -- every public name of the protocol
