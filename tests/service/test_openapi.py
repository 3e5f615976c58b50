"""Issue 12.5: the API documents: /docs offline (and in a real browser), and an OpenAPI schema that tells the truth."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.openapi import EXAMPLES
from service.settings import Settings
from tests.support.app_harness import serving, tiny_settings
from tests.support.live_server import live_server
from tests.support.tiny_models import build_repository

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings(providers=["CPUExecutionProvider"])).openapi()


def operations(spec: dict[str, Any]):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def validate(spec: dict[str, Any], schema: dict[str, Any], value: Any) -> None:
    # The schema's $refs point into the document's components: validate inside a copy of them.
    jsonschema.Draft202012Validator({**schema, "components": spec["components"]}).validate(value)


def test_docs_pages_load_their_assets_from_this_server(tmp_path):
    with TestClient(create_app(Settings(model_repository=tmp_path))) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
            assert urls, page
            assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], (
                f"{page} loads from elsewhere: {urls}"
            )
            for url in urls:
                asset = client.get(url)
                assert asset.status_code == 200, url
        assert len(client.get("/docs/assets/swagger-ui-bundle.js").content) > 500_000  # the real bundle
        assert client.get("/openapi.json").json()["paths"]


def test_the_only_error_body_documented_is_the_real_one(spec):
    text = str(spec)
    assert "HTTPValidationError" not in text and "'detail'" not in text
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "code"]


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/v1/text/classify", "post", {"400", "401", "404", "413", "415", "422", "429", "503", "504"}),
        ("/v2/models/{name}/infer", "post", {"400", "401", "404", "413", "415", "422", "429", "503", "504"}),
        ("/v2/models/{name}/ready", "get", {"400", "401", "404", "503"}),
        ("/v2/repository/models/{name}/load", "post", {"400", "401", "403", "404"}),
        ("/v2/repository/index", "get", {"401", "403"}),
        ("/v2/health/ready", "get", {"503"}),
    ],
)
def test_error_statuses_are_documented_with_the_error_schema(spec, path, method, statuses):
    responses = spec["paths"][path][method]["responses"]
    assert statuses <= set(responses), sorted(responses)
    for status in statuses:
        media = responses[status]["content"]["application/json"]
        assert media["schema"] == {"$ref": "#/components/schemas/Error"}
        validate(spec, media["schema"], media["example"])


def test_the_ready_probes_503_example_is_its_own(spec):
    # Not the general 503 example (a model that is not loaded): the probe's own reason and code.
    media = spec["paths"]["/v2/health/ready"]["get"]["responses"]["503"]["content"]["application/json"]
    assert media["example"] == {"error": "models are still loading (3 versions to go)", "code": "not_ready"}


def test_every_request_and_answer_has_an_example_that_fits_its_schema(spec):
    for path, method, op in operations(spec):
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            assert "example" in body, f"{method} {path}: request"
            validate(spec, body["schema"], body["example"])
        ok = op["responses"]["200"].get("content", {}).get("application/json")
        if path != "/metrics":
            assert ok is not None and "example" in ok, f"{method} {path}: answer"
            validate(spec, ok.get("schema", {}), ok["example"])


def test_v2_infer_has_its_wire_types(spec):
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        op = spec["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/InferenceRequest"
        }
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/InferenceResponse"
        }
    request = spec["components"]["schemas"]["InferenceRequest"]
    assert "inputs" in request["required"]
    with pytest.raises(jsonschema.ValidationError):
        validate(spec, {"$ref": "#/components/schemas/InferenceRequest"}, {"inputs": [{"name": "x"}]})


def test_bearer_tokens_are_security_schemes(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["InferenceToken"] == schemes["InferenceToken"] | {"type": "http", "scheme": "bearer"}
    assert schemes["ManagementToken"]["scheme"] == "bearer"
    assert spec["paths"]["/v2/repository/index"]["get"]["security"] == [{"ManagementToken": []}]
    # `{}` too: while no inference token is configured, a request without one is served.
    assert spec["paths"]["/v1/text/classify"]["post"]["security"] == [{"InferenceToken": []}, {}]
    assert "security" not in spec["paths"]["/v2/health/live"]["get"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/text/classify", '{"texts": ["win cash"]}'),
        ("/v1/anomaly/score", '{"samples": [[0.5]]}'),
        ("/v2/models/digits/infer", "{}"),
        ("/v1/vision/classify", "{}"),
    ],
)
async def test_a_text_plain_body_is_415_not_422(tmp_path, path, body):
    async with serving(tiny_settings(build_repository(tmp_path / "models"))) as (_, client):
        r = await client.post(path, content=body, headers={"Content-Type": "text/plain"})
        as_json = await client.post(path, content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 415, r.text
    assert r.json()["code"] == "unsupported_media_type" and "'text/plain' is not accepted" in r.json()["error"]
    assert as_json.status_code != 415


async def test_the_examples_are_what_the_default_models_answer():
    """The task and V2 examples are the README's: sent to the committed models, they get the same answers."""
    settings = Settings(providers=["CPUExecutionProvider"], validate_models=False, warmup_runs=1, access_log=False)
    async with serving(settings) as (_, client):
        for (method, path), (request, answer) in EXAMPLES.items():
            if method != "post" or request is None or path.startswith(("/v2/repository", "/v1/vision")):
                continue
            url = path.replace("{name}", answer.get("model_name", answer.get("model", ""))).replace("{version}", "1")
            got = (await client.post(url, json=request)).json()
            if "explanations" in answer:
                got_labels = [e.get("label", e.get("is_anomaly")) for e in got["explanations"]]
                assert got_labels == [e.get("label", e.get("is_anomaly")) for e in answer["explanations"]]
            elif "predictions" in answer:
                assert [p["label"] for p in got["predictions"]] == [p["label"] for p in answer["predictions"]]
            elif "results" in answer:
                assert [r["is_anomaly"] for r in got["results"]] == [r["is_anomaly"] for r in answer["results"]]
                assert got["threshold"] == pytest.approx(answer["threshold"], abs=1e-4)
            else:
                assert got["outputs"][0]["data"] == pytest.approx(answer["outputs"][0]["data"], rel=1e-4)
            assert got.get("model", got.get("model_name")) == answer.get("model", answer.get("model_name"))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine: the in-browser check of /docs did not run")
def test_docs_render_offline_in_headless_chromium(tmp_path):
    """A real browser, with every host but this server unresolvable, renders the operation list."""
    repo = build_repository(tmp_path / "models")
    with live_server(tmp_path / "server.log", AXON_MODEL_REPOSITORY=str(repo)) as url:
        flags = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: a CDN cannot be reached
            "--virtual-time-budget=15000",
            "--window-size=1280,1600",
            f"--user-data-dir={tmp_path / 'profile'}",
        ]
        dom = subprocess.run([*flags, "--dump-dom", f"{url}/docs"], capture_output=True, text=True, timeout=120)
        shot = tmp_path / "docs.png"
        subprocess.run([*flags, f"--screenshot={shot}", f"{url}/docs"], capture_output=True, timeout=120, check=True)
    # Swagger UI built the page from /openapi.json: one block per operation, with its path.
    assert dom.stdout.count('class="opblock ') >= 15, dom.stdout[-2000:]
    for path in ("/v1/text/classify", "/v2/models/{name}/infer", "/v2/repository/models/{name}/load"):
        assert path in dom.stdout.replace("&ZeroWidthSpace;", "").replace("\u200b", "")
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16) or []
    # A blank (white) page has one colour; Swagger UI's method badges and text give many.
    assert len(colours) > 50, f"the screenshot looks blank ({len(colours)} colours)"
    green = sum(n for n, (r, g, b) in colours if g > 150 and r < 120 and b < 150)  # the POST badges' green
    assert green > 500, "no POST operation badge was drawn"


def test_the_asset_package_is_a_declared_dependency():
    assert re.search(r'"fastapi-offline>=[\d.]+,<\d+"', (ROOT / "pyproject.toml").read_text())
