"""The series default's selection protocol: cost, grid, choice, and never looking at the reported series."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from training.recipes import series_selection as sel


def test_cost_charges_one_per_missed_window_and_a_half_per_false_alarm():
    found = [
        {"windows_total": 3, "windows_hit": 2, "false_alarms": 1},  # 1 miss, 1 false alarm
        {"windows_total": 2, "windows_hit": 0, "false_alarms": 4},  # 2 misses, 4 false alarms
    ]
    assert sel.cost(found) == 3 * 1.0 + 5 * 0.5


def test_rules_are_the_grid_in_points_with_at_least_one_point_per_alarm():
    rules = sel.rules(128)
    assert len(rules) == 2 * 4 * 6 * 4  # point scores x margins x gaps x lengths
    assert sel.Rule(128, "mean", 1.01, 384, 64) in rules  # 3 windows apart, half a window long
    assert sel.Rule(128, "max", 2.0, 0, 1) in rules
    assert {r.min_points for r in rules} == {1, 32, 64, 128}  # 0 windows means every run counts
    assert {r.merge_gap for r in rules} == {0, 64, 128, 256, 384, 512}


def test_a_rows_cost_is_the_mean_over_seeds_and_its_worst_is_kept():
    one_miss = {"windows_total": 2, "windows_hit": 1, "false_alarms": 0}  # cost 1
    clean = {"windows_total": 2, "windows_hit": 2, "false_alarms": 0}  # cost 0
    noisy = {"windows_total": 2, "windows_hit": 2, "false_alarms": 6}  # cost 3
    row = sel.summary(sel.Rule(256, "mean", 1.01, 0, 1), {0: [one_miss, clean], 1: [clean, clean], 2: [noisy, clean]})
    assert (row["cost"], row["worst_cost"]) == (4 / 3, 3.0)
    assert row["seed_costs"] == {0: 1.0, 1: 0.0, 2: 3.0}
    assert row["found"] == {0: [3, 4, 0], 1: [4, 4, 0], 2: [4, 4, 6]}


def row(window: int, point_score: str, cost: float, worst: float, margin: float = 1.01, gap: int = 0) -> dict:
    return {
        "window": window,
        "point_score": point_score,
        "margin": margin,
        "merge_gap": gap,
        "min_points": 1,
        "cost": cost,
        "worst_cost": worst,
    }


def test_the_choice_is_the_lowest_mean_cost_then_the_lowest_worst_seed():
    # The lower worst seed beats version 1's point score.
    table = [row(256, "mean", 3.0, 3.0), row(128, "mean", 2.5, 6.0), row(128, "max", 2.5, 4.0)]
    assert sel.choose(table) == table[2]


def test_a_tie_keeps_version_ones_window_and_point_score_then_the_plainer_rule():
    table = [row(128, "mean", 2.0, 3.0), row(256, "max", 2.0, 3.0), row(256, "mean", 2.0, 3.0, gap=512)]
    assert sel.choose(table) == table[2]
    table += [row(256, "mean", 2.0, 3.0, gap=256), row(256, "mean", 2.0, 3.0, margin=1.25, gap=0)]
    assert sel.choose(table) == table[3]  # margin first, then the gap


def test_the_machine_temperature_series_is_not_a_development_series():
    assert all("machine_temperature" not in name for name in sel.DEVELOPMENT)
    assert len(sel.DEVELOPMENT) == 6
    assert all("machine_temperature" not in name for name in sel.protocol()["development_series"])


def test_the_protocol_names_its_seeds_grid_rule_and_the_first_protocols_outcome():
    p = sel.protocol()
    assert p["seeds"] == [0, 1, 2]
    assert p["grid"]["point_score"] == ["mean", "max"] and p["grid"]["window"] == [128, 256]
    assert "worst-seed" in p["selection_rule"]
    assert p["history"]["first_protocol"]["machine_temperature"].startswith("2 of 4 windows, 3 false alarms")


def test_a_rule_raises_the_base_threshold_by_its_margin():
    # Points 2..3 score 1.5 against a margin-1 threshold of 1.0: over it at margin 1.25, under it at 2.0.
    points = np.array([0.0, 0.0, 1.5, 1.5, 0.0, 0.0])
    fitted = sel.Scored(SimpleNamespace(windows=[(2, 3)]), {"mean": points}, {"mean": 1.0})
    assert sel.score(fitted, sel.Rule(128, "mean", 1.25, 0, 1))["windows_hit"] == 1
    low = sel.score(fitted, sel.Rule(128, "mean", 2.0, 0, 1))
    assert (low["threshold"], low["windows_hit"]) == (2.0, 0)
