"""HTTP routes: one router per file, each a thin layer over `service.core.Dataplane`."""
