"""The series default's selection protocol: its cost, its grid, and that it never looks at the reported series."""

from __future__ import annotations

from training.recipes import series_selection as sel


def test_cost_charges_one_per_missed_window_and_a_half_per_false_alarm():
    found = [
        {"windows_total": 3, "windows_hit": 2, "false_alarms": 1},  # 1 miss, 1 false alarm
        {"windows_total": 2, "windows_hit": 0, "false_alarms": 4},  # 2 misses, 4 false alarms
    ]
    assert sel.cost(found) == 3 * 1.0 + 5 * 0.5


def test_rules_are_the_grid_in_points_with_at_least_one_point_per_alarm():
    rules = sel.rules(128)
    assert len(rules) == 4 * 6 * 4
    assert sel.Rule(128, 1.01, 384, 64) in rules  # 3 windows apart, half a window long
    assert {r.min_points for r in rules} == {1, 32, 64, 128}  # 0 windows means every run counts
    assert {r.merge_gap for r in rules} == {0, 64, 128, 256, 384, 512}


def test_the_machine_temperature_series_is_not_a_development_series():
    assert all("machine_temperature" not in name for name in sel.DEVELOPMENT)
    assert len(sel.DEVELOPMENT) == 6
    assert all("machine_temperature" not in name for name in sel.protocol()["development_series"])
