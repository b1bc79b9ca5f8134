"""Tollgate's core: domain, registry client, unpacker, scanners, pipeline, store, queue and CLI."""

__version__ = "0.1.0"
