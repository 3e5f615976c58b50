"""How the series anomaly default's settings are chosen without looking at the series it is reported on.

`python -m training.recipes.series_selection` trains the machine-temperature recipe's autoencoder on every
other NAB realKnownCause series (each with its own label windows), once per seed in SEEDS, and scores every
candidate (window, point score, threshold margin, merge gap, minimum alarm length) on them. A candidate's
cost on one seed is 1 per missed window plus 0.5 per alarm outside every window, summed over the series; the
candidate with the lowest cost averaged over the seeds wins (ties: the lower worst-seed cost, then the
incumbent's window and point score, then the plainer rule). The machine-temperature series is never loaded
here; its figures are reported once, by the rebuild, after the choice is frozen in CHOSEN.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

from modelrepo.scoring import PointScore
from training import metrics as ev
from training.data import timeseries
from training.data.paths import default_datasets_dir
from training.recipes.common import Hyper, RunOptions
from training.recipes.series import SeriesFit, fit_series_autoencoder

# The series the choices are made on: realKnownCause without the machine temperature.
DEVELOPMENT = (
    "ambient_temperature_system_failure.csv",
    "cpu_utilization_asg_misconfiguration.csv",
    "ec2_request_latency_system_failure.csv",
    "nyc_taxi.csv",
    "rogue_agent_key_hold.csv",
    "rogue_agent_key_updown.csv",
)
# Fixed before the second protocol ran (the first, seed 0 alone and mean point scores, chose a window that
# a second seed did not confirm): every candidate is scored on three trainings, and the choice is the mean.
SEEDS = (0, 1, 2)
WINDOWS = (128, 256)
POINT_SCORES: tuple[PointScore, ...] = ("mean", "max")
MARGINS = (1.01, 1.25, 1.5, 2.0)
MERGE_GAPS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)  # in windows
MIN_LENGTHS = (0.0, 0.25, 0.5, 1.0)  # in windows (0: every run is an alarm)
MISS_COST, FALSE_ALARM_COST = 1.0, 0.5  # a missed failure is worse than a needless look
INCUMBENT = {"window": 256, "point_score": "mean"}  # version 1's; a tie keeps it
SELECTION_RULE = (
    "lowest cost averaged over the seeds; ties go to the lower worst-seed cost, then to version 1's window (256) "
    "and point score (mean), then to the smaller margin, merge gap and minimum length"
)
FIRST_PROTOCOL = {
    "what": "seed 0 only, mean point scores, windows 128 and 256, the same margins, gaps, lengths and cost",
    "chose": {"window": 128, "threshold_margin": 1.01, "merge_gap": 384, "min_points": 64},
    "development": "14/15 windows, 5 false alarms (cost 3.5)",
    "machine_temperature": "2 of 4 windows, 3 false alarms (measured once; not shipped)",
}


# What `python -m training.recipes.series_selection` printed with the seeds above, frozen here so that the
# rebuild trains only the default and its card says where its settings came from.
# (windows hit / 15, false alarms) per seed 0, 1, 2; cost = mean over the seeds. Run on 2026-11-30.
CHOSEN = {"window": 128, "point_score": "mean", "threshold_margin": 1.01, "merge_gap": 512, "min_points": 128}
DEVELOPMENT_FIGURES = {
    "chosen": {"windows_hit": [13, 13, 13], "false_alarms": [4, 3, 3], "cost": 3.67, "worst_seed_cost": 4.0},
    "first protocol's choice (128, mean, 1.01, gap 384, min 64)": {
        "windows_hit": [14, 14, 14],
        "false_alarms": [5, 6, 6],
        "cost": 3.83,
        "worst_seed_cost": 4.0,
    },
    "version 1 (256, mean, 1.01, no joining, no minimum)": {
        "windows_hit": [14, 13, 13],
        "false_alarms": [17, 14, 17],
        "cost": 9.67,
        "worst_seed_cost": 10.5,
    },
    "best with window 256 (mean, 1.01, gap 1024, min 1)": {
        "windows_hit": [14, 14, 14],
        "false_alarms": [7, 5, 7],
        "cost": 4.17,
        "worst_seed_cost": 4.5,
    },
    "best with point score max (256, 1.01, gap 1024, min 1)": {
        "windows_hit": [11, 10, 12],
        "false_alarms": [4, 3, 5],
        "cost": 6.0,
        "worst_seed_cost": 6.5,
    },
    "windows_total": 15,
}


def protocol() -> dict[str, Any]:
    """The card's account of how the window, the point score and the alarm rule were chosen."""
    return {
        "method": "chosen on other series, then reported once on this one",
        "command": "python -m training.recipes.series_selection",
        "development_series": [f"realKnownCause/{name}" for name in DEVELOPMENT],
        "seeds": list(SEEDS),
        "grid": {
            "window": list(WINDOWS),
            "point_score": list(POINT_SCORES),
            "threshold_margin": list(MARGINS),
            "merge_gap_in_windows": list(MERGE_GAPS),
            "min_points_in_windows": list(MIN_LENGTHS),
        },
        "cost": f"{MISS_COST} per missed label window + {FALSE_ALARM_COST} per alarm outside every window, "
        "summed over the development series (same split, model and threshold rule as the default)",
        "selection_rule": SELECTION_RULE,
        "chosen": CHOSEN,
        "development_figures": DEVELOPMENT_FIGURES,
        "history": {
            "this_protocol": "the second one measured on the machine-temperature series",
            "first_protocol": FIRST_PROTOCOL,
        },
        "note": "the machine-temperature series was not loaded while choosing; its figures are in metrics",
    }


@dataclass(frozen=True)
class Rule:
    """One candidate: the window, the point score and how point scores become alarms (lengths in points)."""

    window: int
    point_score: PointScore
    margin: float
    merge_gap: int
    min_points: int


def rules(window: int) -> list[Rule]:
    """Every point score and alarm rule tried with one window."""
    return [
        Rule(window, how, margin, round(gap * window), max(1, round(length * window)))
        for how, margin, gap, length in itertools.product(POINT_SCORES, MARGINS, MERGE_GAPS, MIN_LENGTHS)
    ]


@dataclass(frozen=True)
class Scored:
    """One fitted development series: its point scores and threshold (margin 1) per point-score kind."""

    series: timeseries.NabSeries
    points: dict[str, np.ndarray]
    base_threshold: dict[str, float]


def scored(fit: SeriesFit, series: timeseries.NabSeries) -> Scored:
    """What the rules need from a fit (the model itself is dropped)."""
    return Scored(
        series,
        {how: fit.points(how) for how in POINT_SCORES},
        {how: fit.threshold(1.0, 1.0, how) for how in POINT_SCORES},
    )


def score(fitted: Scored, rule: Rule) -> dict[str, Any]:
    """The rule's detection on one series, with the recipe's threshold rule (max of normal validation)."""
    threshold = fitted.base_threshold[rule.point_score] * rule.margin
    points = fitted.points[rule.point_score]
    return ev.window_detection(points, threshold, fitted.series.windows, rule.merge_gap, rule.min_points)


def cost(found: list[dict[str, Any]]) -> float:
    """Missed windows and false alarms over the development series."""
    missed = sum(d["windows_total"] - d["windows_hit"] for d in found)
    return float(MISS_COST * missed + FALSE_ALARM_COST * sum(d["false_alarms"] for d in found))


def summary(rule: Rule, per_seed: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """One table row: the rule, its cost per seed, their mean and worst, and what each seed found."""
    costs = [cost(found) for found in per_seed.values()]
    return {
        **asdict(rule),
        "cost": mean(costs),
        "worst_cost": max(costs),
        "seed_costs": dict(zip(per_seed, costs)),
        "found": {  # per seed: windows hit, windows in all, false alarms
            seed: [
                sum(d["windows_hit"] for d in f),
                sum(d["windows_total"] for d in f),
                sum(d["false_alarms"] for d in f),
            ]
            for seed, f in per_seed.items()
        },
    }


def rank(row: dict[str, Any]) -> tuple[Any, ...]:
    """SELECTION_RULE as a sort key: lower is better."""
    return (
        row["cost"],
        row["worst_cost"],
        row["window"] != INCUMBENT["window"],
        row["point_score"] != INCUMBENT["point_score"],
        row["margin"],
        row["merge_gap"],
        row["min_points"],
    )


def choose(table: list[dict[str, Any]]) -> dict[str, Any]:
    """The winning row of the table under SELECTION_RULE."""
    return min(table, key=rank)


def select(
    datasets: Path, hyper: Hyper, model_cfg: dict[str, Any], stride: int, seeds: tuple[int, ...] = SEEDS
) -> dict[str, Any]:
    """Fit every (window, seed, development series), score every rule on each, and return the table and winner."""
    folder = datasets / "nab_realKnownCause" / "data" / "realKnownCause"
    series = {name: timeseries.load_nab(folder / name) for name in DEVELOPMENT}
    table: list[dict[str, Any]] = []
    for window in WINDOWS:
        fitted: dict[int, list[Scored]] = {}
        for seed in seeds:
            opts = RunOptions(Path("unused"), seed=seed, progress=False)
            fitted[seed] = []
            for name in DEVELOPMENT:
                started = time.perf_counter()
                fit = fit_series_autoencoder(
                    series[name],
                    opts,
                    window=window,
                    stride=stride,
                    model_cfg=model_cfg,
                    hyper=hyper,
                    train_fraction=0.5,
                    val_fraction=0.2,
                )
                print(f"window {window} seed {seed} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
                fitted[seed].append(scored(fit, series[name]))
        for rule in rules(window):
            table.append(summary(rule, {seed: [score(f, rule) for f in fitted[seed]] for seed in seeds}))
    return {"seeds": list(seeds), "best": choose(table), "table": table}


def _rule_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("window", "point_score", "margin", "merge_gap", "min_points")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--datasets", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the whole table here")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=list(SEEDS), help="seeds of the fits (the protocol's: SEEDS)"
    )
    args = p.parse_args(argv)
    from training.recipes.defaults import SERIES_HYPER, SERIES_MODEL, SERIES_STRIDE

    datasets = args.datasets or default_datasets_dir()
    result = select(datasets, SERIES_HYPER, SERIES_MODEL, SERIES_STRIDE, tuple(args.seeds))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    for row in sorted(result["table"], key=rank)[:15]:
        print(json.dumps(row))
    references = {"version 1": Rule(256, "mean", 1.01, 0, 1), "first protocol": Rule(128, "mean", 1.01, 384, 64)}
    for what, ref in references.items():
        print(f"{what}:", json.dumps(next(row for row in result["table"] if Rule(**_rule_fields(row)) == ref)))
    print("best:", json.dumps(result["best"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
