"""The README is the newcomer's contract: its settings table and commands must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import settings_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented_with_its_default():
    rows = [line for line in settings_table().splitlines() if line.startswith("| `AXON_")]
    assert len(rows) > 30
    missing = [row.split("|")[1].strip() for row in rows if row not in README]
    assert not missing, f"README settings table is out of date for {missing}: paste `python -m service --help`"


def test_readme_opens_with_the_two_commands_ci_runs():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["./scripts/serve", "./scripts/test"]
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "exec ./scripts/test" in ci
