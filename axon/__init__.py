"""The `axon` command: one entry point above the two independent packages, `service` and `training`.

It lives in a package of its own because `service` must never import `training` (nor the reverse): a
dispatcher inside either would break that rule. `axon.cli` imports neither side until a command picks one.
"""
