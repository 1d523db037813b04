"""The fleet tier, pure part (no I/O): what a fleet of processes shares through Redis.

* :mod:`~tokenguard.fleet.keys`: keys derived from the fleet secret; entry names (HMACs)
  and sealed values (AEAD), so whoever reads Redis learns no token and no claim, and
  whoever writes it cannot make a token pass.
* :mod:`~tokenguard.fleet.codec`: what an entry holds (an introspection answer, a
  revocation), bounded and type-checked when read back.
* :mod:`~tokenguard.fleet.breaker`: when to stop asking a failing Redis for a while.
* :mod:`~tokenguard.fleet.tier`: the steps the validation flow takes with the fleet,
  written as sub-flows that yield :mod:`~tokenguard.core.needs` store needs.
* :mod:`~tokenguard.fleet.config`: the ``[fleet]`` configuration.

The Redis clients live in :mod:`tokenguard.shells.redis_store`; the public entry point is
:class:`tokenguard.redis.RedisFleet`.
"""
