"""The model card file: strict JSON that every client can read."""

import json

import pytest

from training.card import read_card, write_card


def test_a_card_with_a_non_finite_figure_is_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "card.json"
    for bad in (float("nan"), float("inf")):
        # Python's json would write NaN/Infinity, which JSON has no word for: browsers and jq refuse the file.
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            write_card({"metrics": {"test": {"f1": bad}}}, path)
        assert not path.exists()
    write_card({"metrics": {"test": {"f1": 0.5}}}, path)
    assert json.loads(path.read_text()) == read_card(path) == {"metrics": {"test": {"f1": 0.5}}}
