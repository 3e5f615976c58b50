"""Where tests find datasets: the full copies when present, else the committed excerpts in tests/data.

Full data is `$AXON_DATASETS`, else `../shared/datasets` beside the checkout (as in CI). A test that
checks figures only the full data has (row counts from the dataset READMEs) is marked
`@pytest.mark.full_data("name", ...)`; tests/conftest.py skips it, by name, where that data is absent
and lists in the terminal summary which of those checks ran. Every loader also has a test on the
excerpts, which runs everywhere.
"""

from __future__ import annotations

from pathlib import Path

from training.data import catalog
from training.data.paths import default_datasets_dir

EXCERPTS = Path(__file__).resolve().parents[1] / "data"
FULL = default_datasets_dir()


def has_full(*names: str) -> bool:
    """Whether every file of these catalogue datasets (all of them if none named) is in the full folder."""
    return all(not catalog.missing_files(n, FULL) for n in names or catalog.CATALOG)


def root(*names: str) -> Path:
    """The full datasets folder when it holds these datasets, else the excerpts (same layout)."""
    return FULL if has_full(*names) else EXCERPTS
