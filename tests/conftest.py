"""Shared test set-up: the `full_data` marker and the summary of which full-data checks ran."""

from __future__ import annotations

import pytest

from tests.support.data_roots import EXCERPTS, FULL, has_full

_FULL_DATA: dict[str, str] = {}  # test id -> outcome of the tests marked full_data


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "full_data(*names): needs these full datasets (skipped, and reported, without)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("full_data")
    if marker is not None and not has_full(*marker.args):
        pytest.skip(f"full data absent: {', '.join(marker.args)} not in {FULL}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "full_data" in report.keywords and (report.when == "call" or report.skipped):
        _FULL_DATA[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    ran = sorted(k for k, v in _FULL_DATA.items() if v != "skipped")
    skipped = sorted(k for k, v in _FULL_DATA.items() if v == "skipped")
    write = terminalreporter.write_line
    terminalreporter.section("full-data checks")
    where = FULL if has_full() else f"{EXCERPTS} (excerpts; full data not found at {FULL})"
    write(f"datasets used by the loader and CLI tests: {where}")
    write(f"{len(ran)} full-data check(s) ran, {len(skipped)} skipped for lack of the full data")
    for nodeid in ran:
        write(f"  ran     {nodeid} ({_FULL_DATA[nodeid]})")
    for nodeid in skipped:
        write(f"  skipped {nodeid}")
