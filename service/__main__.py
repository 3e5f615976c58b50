"""`python -m service`: serve the model repository with uvicorn, shutting down gracefully on SIGTERM.

On SIGTERM or Ctrl-C readiness turns 503 at once; after `shutdown_delay_s` (time for a load
balancer to notice) the connections waiting in the listen backlog are accepted, the listener closes,
every request already received is answered (at most `drain_timeout_s`), and the app's lifespan drains
every batcher before the process exits. Header and body deadlines, header limits and a connection cap
(`AXON_HTTP__*`) hold on every connection.
"""

from __future__ import annotations

import logging
import sys

from service.app import create_app
from service.logs import configure_logging
from service.server import GracefulServer, ServerConfig, connection_cap, raise_fd_limit
from service.settings import Settings, settings_table

log = logging.getLogger("axon")


def main(argv: list[str]) -> int:
    """Read settings from the environment, configure logs, and serve until a signal."""
    if argv:
        if argv[0] in ("-h", "--help"):
            print(f"usage: python -m service\n\n{__doc__.strip()}\n")
            print(f"Every setting is an environment variable:\n\n{settings_table()}")
            return 0
        print(
            f"python -m service takes no arguments (got {' '.join(argv)}); it reads AXON_* variables, see --help",
            file=sys.stderr,
        )
        return 2
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    app = create_app(settings)
    state = app.state.axon

    def drop_readiness() -> None:
        state.draining = True

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
        timeout_graceful_shutdown=settings.drain_timeout_s,
        lifespan="on",
    )
    server = GracefulServer(config, drop_readiness, settings.shutdown_delay_s)
    state.on_fatal = server.fail
    log.info("serving %s on http://%s:%d", settings.model_repository, settings.host, settings.port)
    server.run()
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
