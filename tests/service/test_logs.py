"""Issue 12.7: health probes are logged at debug; everything else keeps its level."""

from __future__ import annotations

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
