"""benchmarks/peers.py: its text systems (each names its model; a missing one is skipped out loud), the reference
apps (the HTTP floor, the least text server) and how the rounds are read."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("peers", Path(__file__).resolve().parents[2] / "benchmarks/peers.py")
assert spec and spec.loader
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)


class FakeRunAxon:
    @staticmethod
    def axon(port, body, **kw):
        return {"port": port, "body": body, **kw}


def test_a_text_model_the_repository_lacks_is_skipped_with_a_line_saying_so(tmp_path, capsys):
    (tmp_path / "sms-spam-transformer").mkdir()
    (tmp_path / "sms-spam-transformer" / "config.json").write_text("{}")
    assert peers._text_models(tmp_path) == {"axon-text": "sms-spam-transformer"}
    assert (
        f"axon-text-minilm: skipped, the repository {tmp_path} has no model 'sms-spam-minilm'"
        in capsys.readouterr().out
    )
    (tmp_path / "sms-spam-minilm").mkdir()
    (tmp_path / "sms-spam-minilm" / "config.json").write_text("{}")
    assert peers._text_models(tmp_path) == {"axon-text": "sms-spam-transformer", "axon-text-minilm": "sms-spam-minilm"}
    assert "skipped" not in capsys.readouterr().out


def test_each_text_body_names_its_model(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "_text_models", lambda: {"axon-text": "sms-spam-transformer"})
    (tmp_path / "bodies").mkdir()
    systems = peers._axon_systems(FakeRunAxon, tmp_path)
    body = json.loads((tmp_path / "bodies" / systems["axon-text"]["body"]).read_text())
    assert body == {"texts": [peers.SMS], "model": "sms-spam-transformer"}
    assert systems["axon-text"]["url"] == "/v1/text/classify" and systems["axon-text"]["repo"] == "default"


def test_the_floor_app_reads_every_chunk_of_the_body_then_answers_40_fixed_bytes():
    import asyncio

    from benchmarks import floor_app

    chunks = [{"type": "http.request", "body": b"a" * 10, "more_body": True}, {"type": "http.request", "body": b"b"}]
    sent = []

    async def receive():
        assert chunks, "the app asked for more than the body"
        return chunks.pop(0)

    async def send(message):
        assert not chunks, "the app answered before reading the whole body"
        sent.append(message)

    asyncio.run(floor_app.app({"type": "http"}, receive, send))
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-length"] == b"40"
    assert len(sent[1]["body"]) == 40


def test_ceilings_measured_in_every_round_are_reported_as_their_median(tmp_path):
    # Three rounds of the harness's in-process run and of the task-endpoint ceilings, as the table writes them.
    for r, (b64, png) in enumerate([(361.0, 5900.0), (380.0, 5100.0), (365.0, 6000.0)], start=1):
        run = {
            "kind": "inproc",
            "model": "resnet_mid",
            "batches": [{"batch": 1, "items_s": 90.0}, {"batch": 64, "items_s": b64}],
        }
        (tmp_path / f"inproc-resnet_mid-rep{r}.json").write_text(json.dumps(run))
        (tmp_path / f"ceilings-axon-rep{r}.json").write_text(json.dumps({"mnist_png_b64": png}))
    runs = peers._read_runs(tmp_path)
    assert len(runs) == 3  # the ceilings files are not runs
    assert peers._inproc(runs, "resnet_mid", 64, "items_s") == 365.0
    assert peers._inproc(runs, "cnn_small", 64, "items_s") == 0.0
    assert peers._read_ceilings(tmp_path) == {"mnist_png_b64": 5900.0}


def test_a_cores_time_counters_are_read_by_kind_from_its_own_line(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  9 9 9 9 9 9 9 9 0 0\n"
        "cpu0 1 2 3 4 5 6 7 8 0 0\n"
        "cpu1 10 0 30 40 0 0 70 0 0 0\n"
        "cpu10 99 99 99 99 99 99 99 99 0 0\n"
        "intr 1 2 3\n"
    )
    assert peers._core_ticks(1, stat) == {
        "user": 10, "nice": 0, "system": 30, "idle": 40, "iowait": 0, "irq": 0, "softirq": 70, "steal": 0
    }  # fmt: skip
    with pytest.raises(ValueError, match="no core 2"):
        peers._core_ticks(2, stat)


def test_least_text_runs_the_axon_text_body_with_its_own_command(tmp_path, monkeypatch):
    monkeypatch.setattr(peers, "_text_models", lambda: {"axon-text": "sms-spam-transformer"})
    (tmp_path / "bodies").mkdir()
    systems = peers._axon_systems(FakeRunAxon, tmp_path)
    least = systems[peers.LEAST_TEXT]
    assert least["body"] == systems["axon-text"]["body"] and least["url"] == "/" and least["health"] == "/health"
    harness = ["run_bench.py", "server", "--cmd", "exec python -m service", "--url", "u"]
    command = peers._least_text_command("/venv/bin/python", harness)
    assert command[:3] == harness[:3] and command[4:] == harness[4:]
    assert command[3].startswith("exec /venv/bin/python -m uvicorn least_text_app:app --app-dir ")
    assert f"--port {peers.LEAST_TEXT_PORT} --loop uvloop --http httptools" in command[3]


def test_the_least_text_app_answers_concurrent_texts_each_with_its_own_label():
    import asyncio

    from benchmarks import least_text_app

    texts = {peers.SMS: "spam", "Are we still meeting for lunch tomorrow? I can bring the notes": "ham"}

    async def ask(text: str) -> dict:
        body = json.dumps({"texts": [text], "model": "sms-spam-transformer"}).encode()
        sent = []

        async def receive():
            return {"type": "http.request", "body": body}

        async def send(message):
            sent.append(message)

        await least_text_app.app({"type": "http", "method": "POST"}, receive, send)
        assert sent[0]["status"] == 200
        return json.loads(sent[1]["body"])

    async def both() -> list[dict]:
        return await asyncio.gather(*(ask(t) for t in texts))

    answers = asyncio.run(both())
    for answer, label in zip(answers, texts.values()):
        (prediction,) = answer["predictions"]
        assert answer["model"] == "sms-spam-transformer" and prediction["label"] == label
        assert set(prediction["scores"]) == {"ham", "spam"} and sum(prediction["scores"].values()) == pytest.approx(1)


def test_the_text_rows_compare_the_median_round_at_c64_with_the_median_ceiling(tmp_path):
    def level(rps: float) -> dict:
        return {"concurrency": 64, "req_s": rps, "p50_ms": 1.0}

    for r, (axon, least, ceiling) in enumerate(
        [(3000.0, 5000.0, 8000.0), (4000.0, 5500.0, 7000.0), (3500.0, 4000.0, 7500.0)], 1
    ):
        (tmp_path / f"axon-text-rep{r}.json").write_text(
            json.dumps({"name": f"axon-text-rep{r}", "levels": [level(axon)]})
        )
        (tmp_path / f"least-text-rep{r}.json").write_text(
            json.dumps({"name": f"least-text-rep{r}", "levels": [level(least)]})
        )
        (tmp_path / f"ceilings-axon-rep{r}.json").write_text(json.dumps({"sms_grouped_b64": ceiling}))
    table = peers._goals(peers._read_runs(tmp_path), peers._read_ceilings(tmp_path))
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in table.splitlines()[2:]}
    assert rows["SMS text endpoint, c=64"][:4] == ["3,500", "in-process 7,500", "0.47x", ">= 0.75x"]
    assert rows["least Python server for the SMS goal (least_text_app.py), c=64"][:3] == [
        "5,000",
        "in-process 7,500",
        "0.67x",
    ]
    assert not any("minilm" in goal for goal in rows)  # a system that did not run gets no row


def test_wrk_latencies_are_read_in_milliseconds_whatever_unit_wrk_prints():
    report = "  Latency Distribution\n     50%  187.00us\n     75%    1.21ms\n     99%    2.00s \n"
    assert peers.wrk_ms(report, "50%") == pytest.approx(0.187)
    assert peers.wrk_ms(report, "75%") == pytest.approx(1.21)
    assert peers.wrk_ms(report, "99%") == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="no 90% latency"):
        peers.wrk_ms(report, "90%")
