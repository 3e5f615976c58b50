"""What every task shares: a class's label, and scores as answers carry them."""

from __future__ import annotations

from service.tasks.base import label_of, shown


def test_a_class_past_the_configs_labels_is_named_by_its_number():
    assert [label_of(["ham", "spam"], i) for i in range(4)] == ["ham", "spam", "2", "3"]


def test_scores_keep_six_significant_digits():
    assert [shown(0.123456789), shown(1.07e-06 + 1e-13), shown(12345.678)] == [0.123457, 1.07e-06, 12345.7]
