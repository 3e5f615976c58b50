"""benchmarks/app_overhead.py: both apps answer its requests with 200; it prints both figures and the difference."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import re
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "app_overhead", Path(__file__).resolve().parents[2] / "benchmarks/app_overhead.py"
)
assert spec and spec.loader
app_overhead = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app_overhead)


def test_it_measures_both_apps_answering_200_and_leaves_the_process_as_it_found_it(capsys):
    before = (gc.get_threshold(), logging.getLogger("axon").level)
    assert app_overhead.main(["--rounds", "2", "--concurrency", "4"]) == 0
    # The tests share this process: the collector tuning and the quieted log must not outlive the run.
    assert (gc.get_threshold(), logging.getLogger("axon").level) == before and gc.get_freeze_count() == 0
    line = capsys.readouterr().out.strip()
    found = re.fullmatch(r"axon ([\d.]+) us/request, least ([\d.]+) us/request, axon's own ([+-][\d.]+) us", line)
    assert found, line
    axon, least, own = map(float, found.groups())
    assert axon > 0 and least > 0 and own == pytest.approx(axon - least, abs=0.11)


def test_a_request_the_app_refuses_fails_the_run():
    async def refusing(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 429, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    with pytest.raises(AssertionError, match="answered 429"):
        asyncio.run(app_overhead.per_request_us(refusing, 1, 2))
