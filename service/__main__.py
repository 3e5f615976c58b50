"""`python -m service`: serve the model repository with uvicorn, shutting down gracefully on SIGTERM.

On SIGTERM or Ctrl-C readiness turns 503 at once; after `shutdown_delay_s` (time for a load
balancer to notice) uvicorn stops accepting connections, lets running requests finish (at most
`drain_timeout_s`), and the app's lifespan drains every batcher before the process exits.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import FrameType

import uvicorn

from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings, settings_table

log = logging.getLogger("axon")


class GracefulServer(uvicorn.Server):
    """uvicorn.Server whose first signal drops readiness and delays the exit by `shutdown_delay_s`."""

    def __init__(self, config: uvicorn.Config, on_signal, delay_s: float) -> None:
        super().__init__(config)
        self._on_signal = on_signal
        self._delay_s = delay_s
        self._signalled = False
        self.exit_code = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._signalled:  # a second signal: stop waiting for running requests
            self.force_exit = True
            return
        self._signalled = True
        # Only flag-setting here: a signal handler must not take locks (logging does).
        self._on_signal()
        if self._delay_s > 0:
            timer = threading.Timer(self._delay_s, self._begin_exit)
            timer.daemon = True
            timer.start()
        else:
            self._begin_exit()

    def _begin_exit(self) -> None:
        # uvicorn then closes the listener, waits for running requests, and runs the lifespan shutdown.
        self.should_exit = True

    def fail(self, reason: str) -> None:
        """End the process with a non-zero status (a start-up error such as a required GPU missing)."""
        log.critical("exiting: %s", reason)
        self.exit_code = 1
        self.should_exit = True


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

    config = uvicorn.Config(
        app,
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
