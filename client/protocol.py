"""``oaio.client.protocol`` is :mod:`oaio.protocol` under its older name (one module, one set of objects).

The protocol lives outside the client package so that importing it does not import the client (and
``requests``); the client's modules and older callers keep writing ``from oaio.client import protocol``.
"""
import sys

from oaio import protocol

sys.modules[__name__] = protocol
