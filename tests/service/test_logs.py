"""Logging: health probes at debug (issue 12.7), JSON lines with their tracebacks, one access line per request."""

from __future__ import annotations

import json
import logging

import pytest

from service.logs import configure_logging


@pytest.fixture
def access():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield logging.getLogger("axon.access")
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "axon.access" in line]


def test_probe_lines_are_hidden_at_info_and_shown_at_debug(access, capsys):
    configure_logging("info")
    access.info("GET /v2/health/ready 200 0.5ms", extra={"method": "GET", "path": "/v2/health/ready", "status": 200})
    access.info(
        "POST /v1/text/classify 200 3.1ms", extra={"method": "POST", "path": "/v1/text/classify", "status": 200}
    )
    shown = lines(capsys)
    assert len(shown) == 1 and "/v1/text/classify" in shown[0] and " INFO " in shown[0]

    configure_logging("debug")
    access.info("GET /v2/health/live 200 0.2ms", extra={"method": "GET", "path": "/v2/health/live", "status": 200})
    shown = lines(capsys)
    assert len(shown) == 1 and " DEBUG " in shown[0] and "/v2/health/live" in shown[0]


def test_a_failing_probe_is_not_demoted(access, capsys):
    configure_logging("info")
    access.warning("GET /v2/health/ready 503", extra={"method": "GET", "path": "/v2/health/ready", "status": 503})
    assert len(lines(capsys)) == 1


def test_json_lines_carry_the_traceback_and_extra_fields(access, capsys):
    configure_logging("info", as_json=True)
    try:
        raise ValueError("the model file is corrupt")
    except ValueError:
        logging.getLogger("axon.test").exception("it broke", extra={"model": "spam"})
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "axon.test" in line]
    entry = json.loads(line)
    assert entry["message"] == "it broke" and entry["level"] == "error" and entry["model"] == "spam"
    assert entry["exception"].startswith("Traceback") and "ValueError: the model file is corrupt" in entry["exception"]


def test_uvicorns_own_access_line_is_off(access, capsys):
    # The access middleware writes the one access line, with the request id; uvicorn's would be a second one.
    configure_logging("debug")
    logging.getLogger("uvicorn.access").info('127.0.0.1:5000 - "GET /v1/models HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").info("Started server process")
    err = capsys.readouterr().err
    assert "GET /v1/models" not in err and "Started server process" in err
