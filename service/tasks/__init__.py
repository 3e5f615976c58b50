"""The task registry: every task module, listed once.

The app serves each task's lean routes, the loader builds each version's codec from the task that
owns its preprocessing kind, and the data plane runs their jobs. A new task is a new module here
(codec, answers, request and answer types, lean handler), its FastAPI declaration in `service/routes/`
for the docs, and its name and preprocessing section in the shared format (`modelrepo/config.py`).
"""

from __future__ import annotations

from pathlib import Path

from modelrepo.config import ModelConfig
from service.lean import LeanRoute
from service.settings import Limits
from service.tasks import anomaly, text, vision
from service.tasks.base import Codec, TaskSpec

TASKS: tuple[TaskSpec, ...] = (vision.TASK, text.TASK, anomaly.TASK)


def lean_routes() -> list[LeanRoute]:
    """The inference routes of every task."""
    return [r for task in TASKS for r in task.routes]


def build_codec(config: ModelConfig, version_dir: Path, limits: Limits) -> Codec:
    """The codec a version's task and preprocessing kind call for."""
    task = next(t for t in TASKS if t.name == config.task)
    assert config.preprocessing is not None  # the schema gives every task model its preprocessing
    return task.codecs[config.preprocessing.kind](config, version_dir, limits)
