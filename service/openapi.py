"""The API's documents: the OpenAPI schema as clients really meet the service, and docs pages that work offline.

FastAPI derives the schema from the route declarations, which know neither the service's one error body
(`{"error", "code"}`; FastAPI documents its own 422 `{"detail": [...]}` instead) nor the statuses that
the data plane raises (404, 413, 415, 429, 503, 504), nor the V2 wire types that the lean path parses by
hand. This module fixes the generated schema up once, by path and operation, so the route modules stay
as they are: the error schema and responses, one example per request and response (the README's),
the V2 inference body and answer, and the bearer tokens as security schemes.

`/docs` (Swagger UI) and `/redoc` load their scripts from this server (the `fastapi-offline` package
ships them), not from a CDN, so they render on a machine without internet access.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from service.v2.datamodels import InferenceRequest, InferenceResponse, RepositoryIndexRequest, RepositoryModelRequest

ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
Schema = dict[str, Any]

ERROR = {
    "type": "object",
    "title": "Error",
    "description": "Every error, whatever the route: a message naming the thing, and a stable code.",
    "required": ["error", "code"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
}

# Status -> (what it means, an example body the service really sends).
ERRORS: dict[int, tuple[str, dict[str, str]]] = {
    400: (
        "malformed request (invalid JSON, bad tensor, bad name)",
        {
            "error": "request body is not valid JSON: unexpected character: line 1 column 1 (char 0)",
            "code": "bad_request",
        },
    ),
    401: (
        "the bearer token is missing or wrong (only when a token is configured)",
        {"error": "the inference API needs an 'Authorization: Bearer <token>' header", "code": "unauthorized"},
    ),
    403: (
        "the management API is closed (no token configured, not a request from this machine)",
        {"error": "the management API is disabled: no management token is configured", "code": "forbidden"},
    ),
    404: (
        "no such model or version in the repository",
        {"error": "model 'nope' is not in the repository", "code": "model_not_found"},
    ),
    413: (
        "body, image, pixels or item count above a limit",
        {"error": "65 images in one request; the limit is 64", "code": "payload_too_large"},
    ),
    415: (
        "unsupported media type",
        {
            "error": "content type 'text/plain' is not accepted; send application/json "
            "(or multipart/form-data to /v1/vision/classify)",
            "code": "unsupported_media_type",
        },
    ),
    422: (
        "well-formed but invalid input (wrong type, feature count, empty list)",
        {"error": "body.texts: List should have at least 1 item after validation, not 0", "code": "invalid_input"},
    ),
    429: (
        "the model's queue or the in-flight limit is full; retry after `Retry-After`",
        {"error": "model 'mnist-cnn' version 1 has 256 rows queued (limit 256); retry later", "code": "overloaded"},
    ),
    503: (
        "loading, not loaded, or shutting down; retry after `Retry-After`",
        {
            "error": "model 'mnist-cnn' has a folder in the repository but is not loaded: load it with "
            "POST /v2/repository/models/mnist-cnn/load, or set AXON_REPOSITORY_POLL_INTERVAL_S",
            "code": "model_not_ready",
        },
    ),
    504: (
        "past the request deadline (`AXON_REQUEST_TIMEOUT_S`)",
        {"error": "model 'mnist-cnn' version 1 gave no answer within 30 s", "code": "deadline_exceeded"},
    ),
}
# Where a route's error differs from the general example above.
ERROR_EXAMPLES: dict[tuple[str, int], dict[str, str]] = {
    ("/v2/health/ready", 503): {"error": "models are still loading (3 versions to go)", "code": "not_ready"},
}
INFER_ERRORS = (400, 401, 404, 413, 415, 422, 429, 503, 504)
MODEL_ERRORS = (400, 401, 404, 503)
MANAGE_ERRORS = (400, 401, 403, 404)

# The README's examples (Serving and V2 sections);
# tests/service/test_openapi.py sends each request to the default models.
TEXTS = ["WINNER!! You have won a £1000 prize. Call 09061701461 to claim now", "Are we still on for lunch tomorrow?"]
THYROID_ROW = [0.73, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0.0006, 0.015, 0.12, 0.082, 0.146]
EXAMPLES: dict[tuple[str, str], tuple[Any, Any]] = {
    ("post", "/v1/vision/classify"): (
        {"images": ["<base64 of a PNG, JPEG or WebP file>"], "top_k": 2},
        {
            "model": "mnist-cnn",
            "version": 1,
            "predictions": [
                {
                    "label": "2",
                    "score": 0.999998,
                    "top_k": [{"label": "2", "score": 0.999998}, {"label": "0", "score": 1.07e-06}],
                }
            ],
        },
    ),
    ("post", "/v1/text/classify"): (
        {"texts": TEXTS},
        {
            "model": "sms-spam-minilm",
            "version": 1,
            "predictions": [
                {"label": "spam", "score": 0.99982, "scores": {"ham": 0.000179848, "spam": 0.99982}},
                {"label": "ham", "score": 0.999554, "scores": {"ham": 0.999554, "spam": 0.000445596}},
            ],
        },
    ),
    ("post", "/v1/anomaly/score"): (
        {"samples": [THYROID_ROW]},
        {
            "model": "thyroid-autoencoder",
            "version": 1,
            "threshold": 0.0366,
            "results": [{"score": 0.0036, "is_anomaly": False}],
        },
    ),
    ("post", "/v2/models/{name}/infer"): (
        {
            "id": "42",
            "inputs": [{"name": "features", "shape": [1, 21], "datatype": "FP32", "data": THYROID_ROW}],
            "outputs": [{"name": "score"}],
        },
        {
            "model_name": "thyroid-autoencoder",
            "model_version": "1",
            "id": "42",
            "outputs": [{"name": "score", "datatype": "FP32", "shape": [1], "data": [0.09859076]}],
        },
    ),
    ("get", "/v2/models/{name}"): (
        None,
        {
            "name": "thyroid-autoencoder",
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 21]}],
            "outputs": [
                {"name": "reconstruction", "datatype": "FP32", "shape": [-1, 21]},
                {"name": "score", "datatype": "FP32", "shape": [-1]},
            ],
            "parameters": {
                "task": "anomaly",
                "state": "ready",
                "max_batch_size": 64,
                "providers": "CPUExecutionProvider",
            },
        },
    ),
    ("get", "/v2/models/{name}/ready"): (None, {"name": "thyroid-autoencoder", "ready": True}),
    ("get", "/v2"): (
        None,
        {"name": "axon", "version": "0.1.0", "extensions": ["binary_tensor_data", "model_repository"]},
    ),
    ("get", "/v2/health/live"): (None, {"live": True}),
    ("get", "/v2/health/ready"): (None, {"ready": True}),
    ("get", "/v1/models"): (
        None,
        {
            "models": [
                {
                    "name": "thyroid-autoencoder",
                    "task": "anomaly",
                    "description": "",
                    "state": "ready",
                    "version_policy": {"latest": {"num_versions": 1}},
                    "versions": [
                        {"version": 1, "state": "ready", "reason": None, "providers": ["CPUExecutionProvider"]}
                    ],
                }
            ],
            "defaults": {
                "vision": {"model": "mnist-cnn", "resolved": True},
                "series": {
                    "model": "machine-temperature-autoencoder",
                    "resolved": False,
                    "reason": "model 'machine-temperature-autoencoder' is not in the repository",
                },
            },
        },
    ),
    ("get", "/v2/repository/index"): (
        None,
        [
            {"name": "mnist-cnn", "version": "1", "state": "READY", "reason": ""},
            {"name": "my-digits", "state": "UNAVAILABLE", "reason": "not loaded"},
        ],
    ),
    ("post", "/v2/repository/index"): (
        {"ready": True},
        [{"name": "mnist-cnn", "version": "1", "state": "READY", "reason": ""}],
    ),
    ("post", "/v2/repository/models/{name}/load"): ({}, {"name": "my-digits", "versions": ["1"]}),
    ("post", "/v2/repository/models/{name}/unload"): ({}, {"name": "my-digits"}),
}
# Routes sharing another's example: the versioned forms of the V2 routes, and one model of /v1/models.
EXAMPLES[("post", "/v2/models/{name}/versions/{version}/infer")] = EXAMPLES[("post", "/v2/models/{name}/infer")]
EXAMPLES[("get", "/v2/models/{name}/versions/{version}")] = EXAMPLES[("get", "/v2/models/{name}")]
EXAMPLES[("get", "/v2/models/{name}/versions/{version}/ready")] = EXAMPLES[("get", "/v2/models/{name}/ready")]
EXAMPLES[("get", "/v1/models/{name}")] = (None, EXAMPLES[("get", "/v1/models")][1]["models"][0])
# Explanations (README "Explanations"); lists cut short: a saliency map is H x W, a row has 21 features.
EXAMPLES[("post", "/v1/vision/explain")] = (
    {"images": ["<base64 of a PNG, JPEG or WebP file>"], "target": "2", "overlay": False},
    {
        "model": "mnist-cnn",
        "version": 1,
        "explanations": [{"label": "2", "score": 0.999998, "saliency": [[0.0, 0.0], [0.0, 0.41]], "passes": 50}],
    },
)
EXAMPLES[("post", "/v1/text/explain")] = (
    {"texts": [TEXTS[0]]},
    {
        "model": "sms-spam-minilm",
        "version": 1,
        "explanations": [
            {
                "label": "spam",
                "score": 0.99982,
                "tokens": [
                    {"token": "winner", "start": 0, "end": 6, "contribution": -1.7e-05},
                    {"token": "09", "start": 42, "end": 44, "contribution": 2.6e-05},
                ],
                "passes": 23,
            }
        ],
    },
)
EXAMPLES[("post", "/v1/anomaly/explain")] = (
    {"samples": [THYROID_ROW]},
    {
        "model": "thyroid-autoencoder",
        "version": 1,
        "threshold": 0.0366,
        "explanations": [
            {
                "score": 0.0036,
                "is_anomaly": False,
                "features": [
                    {"name": "age", "value": 0.73, "contribution": 0.01},
                    {"name": "on_thyroxine", "value": 1.0, "contribution": 0.3507},
                ],
                "passes": 1,
            }
        ],
    },
)
EXAMPLES[("post", "/v2/models/{name}/explain")] = EXAMPLES[("post", "/v1/text/explain")]
EXAMPLES[("post", "/v2/models/{name}/versions/{version}/explain")] = EXAMPLES[("post", "/v1/text/explain")]
# Triton's model configuration and statistics extensions (service/v2/config.py, service/statistics.py).
_DURATION = {"count": 3, "ns": 1_250_000}
EXAMPLES[("get", "/v2/models/{name}/config")] = (
    None,
    {
        "name": "mnist-cnn",
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": 64,
        "input": [{"name": "image", "data_type": "TYPE_FP32", "dims": [1, 28, 28]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10]}],
        "dynamic_batching": {"max_queue_delay_microseconds": 2000, "default_queue_policy": {"max_queue_size": 256}},
        "parameters": {"task": {"string_value": "vision"}},
    },
)
EXAMPLES[("get", "/v2/models/{name}/stats")] = (
    None,
    {
        "model_stats": [
            {
                "name": "mnist-cnn",
                "version": "1",
                "last_inference": 1764480000000,
                "inference_count": 5,
                "execution_count": 2,
                "inference_stats": {
                    "success": _DURATION,
                    "fail": {"count": 0, "ns": 0},
                    "queue": _DURATION,
                    "compute_input": _DURATION,
                    "compute_infer": _DURATION,
                    "compute_output": _DURATION,
                },
                "batch_stats": [],
            }
        ]
    },
)
EXAMPLES[("get", "/v2/models/stats")] = EXAMPLES[("get", "/v2/models/{name}/stats")]
EXAMPLES[("get", "/v2/models/{name}/versions/{version}/config")] = EXAMPLES[("get", "/v2/models/{name}/config")]
EXAMPLES[("get", "/v2/models/{name}/versions/{version}/stats")] = EXAMPLES[("get", "/v2/models/{name}/stats")]

# Request bodies the lean path or the repository routes parse by hand, so FastAPI cannot see them.
BODIES: dict[tuple[str, str], type[BaseModel]] = {
    ("post", "/v2/models/{name}/infer"): InferenceRequest,
    ("post", "/v2/models/{name}/versions/{version}/infer"): InferenceRequest,
    ("post", "/v2/repository/index"): RepositoryIndexRequest,
    ("post", "/v2/repository/models/{name}/load"): RepositoryModelRequest,
    ("post", "/v2/repository/models/{name}/unload"): RepositoryModelRequest,
}
ANSWERS: dict[tuple[str, str], type[BaseModel]] = {
    ("post", "/v2/models/{name}/infer"): InferenceResponse,
    ("post", "/v2/models/{name}/versions/{version}/infer"): InferenceResponse,
}
SECURITY = {
    "InferenceToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "AXON_AUTH__INFERENCE_TOKEN; inference is open when it is unset.",
    },
    "ManagementToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "AXON_AUTH__MANAGEMENT_TOKEN; without it only requests from this machine "
        "(AXON_AUTH__LOCAL_MANAGEMENT, on while bound to loopback) may manage.",
    },
}


def install_docs(app: FastAPI) -> None:
    """Serve /docs and /redoc with local assets, and the decorated schema at /openapi.json."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    title = app.title
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    generate: Callable[[], Schema] = app.openapi

    def openapi() -> Schema:
        if app.openapi_schema is None:
            app.openapi_schema = decorate(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def decorate(schema: Schema) -> Schema:
    """The generated schema with the real error body, statuses, examples, V2 bodies and security schemes."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR
    for model in {*BODIES.values(), *ANSWERS.values()}:
        _add_model(schemas, model)
    components["securitySchemes"] = SECURITY
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            _decorate_operation(path, method, op, schemas)
    # FastAPI's validation error shape is never sent: requests are validated into the one error body.
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    return schema


def _decorate_operation(path: str, method: str, op: Schema, schemas: Schema) -> None:
    key = (method, path)
    responses = op.setdefault("responses", {})
    if key in BODIES:
        ref = {"$ref": f"#/components/schemas/{BODIES[key].__name__}"}
        content = op.setdefault("requestBody", {"required": False}).setdefault("content", {})
        content.setdefault("application/json", {})["schema"] = ref
    if key in ANSWERS:
        ok = responses.setdefault("200", {"description": "Successful Response"})
        ok.setdefault("content", {}).setdefault("application/json", {})["schema"] = {
            "$ref": f"#/components/schemas/{ANSWERS[key].__name__}"
        }
    request_example, answer_example = EXAMPLES.get(key, (None, None))
    if request_example is not None:
        media = op.get("requestBody", {}).get("content", {}).get("application/json")
        if media is not None:
            media["example"] = request_example
    if answer_example is not None:
        responses["200"].setdefault("content", {}).setdefault("application/json", {}).setdefault("schema", {})
        responses["200"]["content"]["application/json"]["example"] = answer_example
    responses.pop("422", None)  # FastAPI's own `{"detail": [...]}`, never sent; listed below where it applies
    for status in _statuses(path, method):
        why, body = ERRORS[status]
        body = ERROR_EXAMPLES.get((path, status), body)
        responses[str(status)] = {
            "description": why,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}, "example": body}},
        }
    if path.startswith("/v2/repository"):
        op["security"] = [{"ManagementToken": []}]
    elif not path.startswith(("/v2/health", "/metrics")):
        op["security"] = [{"InferenceToken": []}, {}]  # `{}`: no token needed while none is configured


def _statuses(path: str, method: str) -> tuple[int, ...]:
    """The error statuses a route answers."""
    if path.startswith("/v2/repository"):
        return MANAGE_ERRORS if "/models/" in path else (401, 403)
    if path == "/v2/health/ready":
        return (503,)
    if path.startswith(("/v2/health", "/metrics")):
        return ()
    if method == "post":
        return INFER_ERRORS
    if "{name}" in path:
        return MODEL_ERRORS
    return (401,)


def _add_model(schemas: Schema, model: type[BaseModel]) -> None:
    """A pydantic model's JSON schema and its nested models under components/schemas."""
    found = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in found.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas[model.__name__] = found
