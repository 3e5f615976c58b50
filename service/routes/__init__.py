"""HTTP routes: one router per file, each a thin layer over `service.dataplane.Dataplane`.

The task routes only declare what `service.tasks` serves on the lean path, for the OpenAPI docs.
"""
