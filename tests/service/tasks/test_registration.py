"""The task registry: every task of the format is served, with a codec per preprocessing kind and documented routes."""

from __future__ import annotations

from typing import get_args

import pytest

from modelrepo.config import TASK_PREPROCESSING, Task
from service.app import create_app
from service.settings import DefaultModels, Settings
from service.tasks import TASKS, lean_routes
from service.tasks.anomaly import ScoreSamples, ScoreSeries
from service.tasks.text import ClassifyTexts
from service.tasks.vision import ClassifyImages


def test_every_task_of_the_format_has_one_module_with_a_codec_per_preprocessing_kind():
    assert sorted(t.name for t in TASKS) == sorted(get_args(Task))
    for task in TASKS:
        assert set(task.codecs) == TASK_PREPROCESSING[task.name], task.name


@pytest.mark.parametrize("job", [ClassifyImages, ClassifyTexts, ScoreSamples, ScoreSeries])
def test_each_job_reads_a_default_model_setting_of_its_task(job):
    assert job.default_model in DefaultModels.model_fields
    assert job.task in {t.name for t in TASKS}


def test_the_readme_default_model_settings_map_to_the_jobs_that_read_them():
    # AXON_DEFAULT_MODELS__VISION/TEXT/ANOMALY/SERIES are a README contract: each one is read by some job.
    read = {job.default_model for job in (ClassifyImages, ClassifyTexts, ScoreSamples, ScoreSeries)}
    assert read == {"vision", "text", "anomaly", "series"} == set(DefaultModels.model_fields)


def test_every_lean_task_route_is_declared_for_the_docs(tmp_path):
    documented = create_app(Settings(model_repository=tmp_path)).openapi()["paths"]
    for route in lean_routes():
        assert "post" in documented.get(route.path, {}), f"{route.path} is served but not documented"
