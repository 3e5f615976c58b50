"""Structured logging: plain or JSON lines, every record stamped with the current request id."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import ClassVar

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Copies the request id of the task that logs into the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any `extra` fields."""

    # uvicorn adds an ANSI-coloured copy of its messages; it is noise in JSON.
    _standard: ClassVar[set[str]] = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
    _standard |= {"message", "request_id", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._standard})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ProbesAtDebug(logging.Filter):
    """Access lines of health probes go to debug: a load balancer's probe every few seconds is not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = getattr(record, "path", None) or getattr(record, "route", None) or ""
        if isinstance(path, str) and path.startswith(PROBE_PREFIX) and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            # The logger's threshold was checked at INFO; check it again at the level the record now has.
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


PROBE_PREFIX = "/v2/health/"


def configure_logging(level: str = "info", as_json: bool = False) -> None:
    """Send the service's and uvicorn's logs to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our middleware writes the access log with the request id; uvicorn's would be a second line.
    logging.getLogger("uvicorn.access").disabled = True
    access = logging.getLogger("axon.access")
    if not any(isinstance(f, ProbesAtDebug) for f in access.filters):
        access.addFilter(ProbesAtDebug())
