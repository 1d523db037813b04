"""The I/O shells: drivers of the core's validation flow.

:mod:`~tokenguard.shells.sync` (threads) and :mod:`~tokenguard.shells.aio` (asyncio)
perform what the flow yields, once per need however many validations wait for it, and
send the result back; :mod:`~tokenguard.shells.transport` holds what both share. No
validation rule lives here.
"""
