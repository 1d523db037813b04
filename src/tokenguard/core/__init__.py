"""The pure core: every validation rule, and no I/O.

Token detection, JOSE parsing, claims, keys, discovery, introspection, policies, caches
and the engine that writes the validation flow once as a generator yielding what it
needs (:class:`~tokenguard.core.exchange.Fetch`). Nothing here opens a socket, reads a
file or touches an event loop; the shells in :mod:`tokenguard.shells` do that.
"""
