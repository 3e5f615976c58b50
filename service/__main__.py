"""`python -m service`: serve the model repository with uvicorn, shutting down gracefully on SIGTERM.

On SIGTERM or Ctrl-C readiness turns 503 at once; after `shutdown_delay_s` (time for a load
balancer to notice) the connections waiting in the listen backlog are accepted, the listener closes,
every request already received is answered (at most `drain_timeout_s`), and the app's lifespan drains
every batcher before the process exits. Header and body deadlines, header limits and a connection cap
(`AXON_HTTP__*`) hold on every connection.

With `AXON_WORKERS=N` (N > 1) this process is a supervisor: it binds the port and runs N such servers
on it (`service.workers`); SIGTERM drains each, and a worker that dies is replaced.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pydantic import BaseModel

from service.logs import configure_logging
from service.settings import Settings, settings_table
from service.workers import Peers, Supervisor

log = logging.getLogger("axon")


def main(argv: list[str]) -> int:
    """Read settings from the environment, configure logs, and serve until a signal."""
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: python -m service [--SETTING VALUE ...]\n\n{__doc__.strip()}\n")
        print("Every top-level setting is also a flag (`--port 9000` sets AXON_PORT); nested groups are variables.\n")
        print(f"Every setting is an environment variable:\n\n{settings_table()}")
        return 0
    apply_flags(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    peers = Peers.from_env(settings.workers)
    if settings.workers > 1 and peers is None:
        # The supervisor imports no app code: prometheus-client must first see PROMETHEUS_MULTIPROC_DIR.
        return Supervisor(settings).run()
    return serve(settings, peers)


def apply_flags(argv: list[str]) -> None:
    """`--port 9000`-style flags for the top-level settings: each sets its AXON_* variable (so workers see it)."""
    parser = argparse.ArgumentParser(prog="python -m service", add_help=False)
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            continue  # nested groups (limits, auth, http...) stay environment variables: AXON_LIMITS__MAX_TEXTS
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar=name.upper())
    for name, value in vars(parser.parse_args(argv)).items():  # an unknown flag exits 2 with the usage line
        if value is not None:
            os.environ[f"AXON_{name.upper()}"] = value


def serve(settings: Settings, peers: Peers | None) -> int:
    """Run one server process: the whole service, or one worker of a group."""
    from service.app import create_app
    from service.server import GracefulServer, ServerConfig, connection_cap, raise_fd_limit, tune_collector

    app = create_app(settings)
    state = app.state.axon
    state.peers = peers

    def drop_readiness() -> None:
        state.draining = True

    tune_collector()  # the app is built: modules, schemas and routes are made once, never garbage
    fd_limit = raise_fd_limit()
    max_connections = connection_cap(settings.http.max_connections, fd_limit)
    if max_connections < settings.http.max_connections:
        log.warning("open-file limit %d allows only %d connections", fd_limit, max_connections)
    config = ServerConfig(
        app,
        http=settings.http,
        max_connections=max_connections,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,  # no "server: uvicorn" on every answer: nothing for a client, a scan per request
        timeout_graceful_shutdown=settings.drain_timeout_s,
        lifespan="on",
    )
    server = GracefulServer(config, drop_readiness, settings.shutdown_delay_s, tick=state.tick if peers else None)
    state.on_fatal = server.fail
    if peers is None:
        log.info("serving %s on http://%s:%d", settings.model_repository, settings.host, settings.port)
        server.run()
    else:
        server.run(sockets=[peers.listener()])
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
