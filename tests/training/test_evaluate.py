"""Metrics on hand-made arrays whose answers are known."""

import numpy as np
import pytest

from training import evaluate as ev


def test_classification_metrics_counts_and_f1():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    m = ev.classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    # a: precision 2/3, recall 2/3; b: precision 2/3, recall 1; c: never predicted.
    assert m["per_class_f1"]["a"] == pytest.approx(2 / 3)
    assert m["per_class_f1"]["b"] == pytest.approx(0.8)
    assert m["per_class_f1"]["c"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 3)


def test_anomaly_metrics_perfect_and_inverted_ranking():
    y = np.array([0, 0, 0, 1, 1])
    perfect = ev.anomaly_metrics(y, np.array([0.1, 0.2, 0.3, 0.8, 0.9]), threshold=0.5)
    assert perfect["roc_auc"] == 1.0 and perfect["pr_auc"] == 1.0
    assert (perfect["precision"], perfect["recall"], perfect["f1"], perfect["flagged"]) == (1.0, 1.0, 1.0, 2)
    inverted = ev.anomaly_metrics(y, np.array([0.9, 0.8, 0.7, 0.2, 0.1]), threshold=0.5)
    assert inverted["roc_auc"] == 0.0
    assert inverted["recall"] == 0.0


def test_anomaly_metrics_one_class_has_no_auc():
    m = ev.anomaly_metrics(np.zeros(4), np.arange(4.0), threshold=1.5)
    assert m["roc_auc"] is None and m["flagged"] == 2


def test_quantile_threshold():
    assert ev.quantile_threshold(np.arange(101.0), 0.9) == pytest.approx(90.0)
    assert ev.quantile_threshold(np.arange(101.0), 1.0) == 100.0


def test_f1_best_threshold_separates_and_flags_strictly_above():
    y = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7])
    t = ev.f1_best_threshold(y, scores)
    assert 0.4 < t < 0.6
    assert ((scores > t) == y.astype(bool)).all()


def test_f1_best_threshold_when_the_best_cut_is_the_lowest_score():
    y = np.array([1, 1, 1])
    scores = np.array([0.5, 0.6, 0.7])
    t = ev.f1_best_threshold(y, scores)
    assert (scores > t).all()


def test_window_detection_hits_and_false_alarms():
    scores = np.zeros(100)
    scores[12] = 5.0  # inside window 1
    scores[50:53] = 5.0  # outside every window: one false alarm of 3 points
    scores[79] = 0.9  # inside window 2 but below the threshold
    scores[95:] = 5.0  # straddles the end of window 3: a hit, not a false alarm
    windows = [(10, 20), (70, 80), (90, 96)]
    d = ev.window_detection(scores, 1.0, windows)
    assert d["hit"] == [True, False, True]
    assert d["windows_hit"] == 2 and d["windows_total"] == 3
    assert d["segments"] == 3
    assert d["false_alarms"] == 1 and d["false_alarm_points"] == 3


def test_in_windows_includes_both_ends():
    mask = ev.in_windows(6, [(1, 2), (5, 5)])
    assert mask.tolist() == [False, True, True, False, False, True]


def test_series_point_scores_average_the_covering_windows():
    # 4 points, window 2, stride 1: windows [0,1], [1,2], [2,3] with scores 1, 2, 3.
    points = ev.series_point_scores(np.array([1.0, 2.0, 3.0]), 4, 2, 1)
    assert points.tolist() == pytest.approx([1.0, 1.5, 2.5, 3.0])


def _imported_modules(path):
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):  # function-level imports too: that is where a cycle hides
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_evaluate_and_recipes_do_not_import_each_other():
    from pathlib import Path

    import training

    root = Path(training.__file__).parent
    assert not {m for m in _imported_modules(root / "evaluate.py") if m.startswith("training.recipes")}
    for recipe in (root / "recipes").glob("*.py"):
        assert "training.evaluate" not in _imported_modules(recipe), recipe.name


def test_window_detection_counts_the_alarms_the_rule_leaves():
    scores = np.zeros(60)
    scores[[10, 13]] = 5.0  # inside window (8, 20): two runs, 2 points apart
    scores[30] = 5.0  # a one-point blip outside every window
    scores[40:46] = 5.0  # six points outside every window
    scores[52] = 5.0  # one point inside window (50, 55)
    windows = [(8, 20), (50, 55)]
    plain = ev.window_detection(scores, 1.0, windows)
    assert (plain["windows_hit"], plain["segments"], plain["false_alarms"], plain["false_alarm_points"]) == (2, 5, 2, 7)
    # Joined (gap 2) and at least 3 points long: 10-13, 40-45 remain; the blips at 30 and 52 go, so (50, 55) is missed.
    ruled = ev.window_detection(scores, 1.0, windows, merge_gap=2, min_points=3)
    assert ruled["hit"] == [True, False]
    assert (ruled["segments"], ruled["false_alarms"], ruled["false_alarm_points"]) == (2, 1, 6)
    assert (ruled["merge_gap"], ruled["min_points"]) == (2, 3)


def test_alarm_points_outside_windows_count_a_joined_alarms_overhang():
    scores = np.zeros(40)
    scores[[18, 24]] = 5.0  # 18 inside window (10, 20), 24 outside it; joined with gap 5 into 18-24
    d = ev.window_detection(scores, 1.0, [(10, 20)], merge_gap=5)
    assert d["hit"] == [True] and d["false_alarms"] == 0
    assert d["alarm_points_outside_windows"] == 4  # 21, 22, 23, 24


def _tabular_version(repository, seed: int, threshold: float) -> None:
    from tests.support.tiny_autoencoder import tiny_autoencoder, tiny_autoencoder_config
    from training.repository import write_version

    cases = [(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32),)]
    write_version(repository, tiny_autoencoder(seed), tiny_autoencoder_config(threshold), cases)


def test_evaluate_version_scores_the_newest_version_on_the_training_runs_held_out_rows(tmp_path):
    from training.data.split import POOL_SPLIT, stratified_split

    _tabular_version(tmp_path, seed=0, threshold=0.5)
    _tabular_version(tmp_path, seed=1, threshold=0.7)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 3)) * np.repeat([[1.0], [3.0]], 200, axis=0)
    y = np.repeat([0, 1], 200)
    held = ev.evaluate_version(tmp_path, "tiny-ae", None, {"x": x, "y": y}, split="test", seed=3)
    # The rows a training run with seed 3 held out for its test figure (the recipes split with the same call).
    test_rows = stratified_split(y, POOL_SPLIT, seed=3)[2]
    alone = ev.evaluate_version(tmp_path, "tiny-ae", 2, {"x": x[test_rows], "y": y[test_rows]}, split="all")
    assert held["version"] == 2 and held["split"] == "test"
    assert {k: v for k, v in held.items() if k != "split"} == {k: v for k, v in alone.items() if k != "split"}
    first = ev.evaluate_version(tmp_path, "tiny-ae", 1, {"x": x, "y": y}, split="test", seed=3)
    assert first["version"] == 1 and first != held
