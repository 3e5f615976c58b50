"""Every knob of the service in one pydantic-settings class, read from `AXON_*` environment variables.

Nested groups use `__`: `AXON_LIMITS__MAX_IMAGES=16`, `AXON_DEFAULT_MODELS__TEXT=sentiment-gru`.
Lists accept JSON or commas: `AXON_PROVIDERS=CPUExecutionProvider` or `'["CUDAExecutionProvider"]'`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


class DefaultModels(BaseModel):
    """The model each task endpoint serves when a request names none."""

    # The docstring under each field becomes its description (docs, `settings_table`).
    model_config = ConfigDict(use_attribute_docstrings=True)

    vision: str = "mnist-cnn"
    """Default model of POST /v1/vision/classify."""
    text: str = "sms-spam-minilm"
    """Default model of POST /v1/text/classify."""
    anomaly: str = "thyroid-autoencoder"
    """Default model of POST /v1/anomaly/score for a body with `samples` (tabular rows)."""
    series: str = "machine-temperature-autoencoder"
    """Default model of POST /v1/anomaly/score for a body with `series` (one time series)."""


class Limits(BaseModel):
    """What one request may carry; anything above is refused with 413 before any work is done."""

    # The docstring under each field becomes its description (docs, `settings_table`).
    model_config = ConfigDict(use_attribute_docstrings=True)

    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1)
    """Largest request body in bytes, enforced while reading (chunked bodies included)."""
    max_images: int = Field(64, ge=1)
    """Images per vision request."""
    max_image_bytes: int = Field(4 * 1024 * 1024, ge=1)
    """Encoded size of one image in bytes."""
    max_image_pixels: int = Field(4096 * 4096, ge=1)
    """Width x height of one decoded image; also Pillow's decompression-bomb threshold."""
    max_texts: int = Field(64, ge=1)
    """Texts per text request."""
    max_text_chars: int = Field(10_000, ge=1)
    """Characters of one text (before tokenization truncates it)."""
    max_samples: int = Field(1024, ge=1)
    """Tabular rows per anomaly request."""
    max_series_length: int = Field(100_000, ge=1)
    """Points of one time series."""
    max_top_k: int = Field(100, ge=1)
    """Largest `top_k` a vision request may ask for."""
    max_form_fields: int = Field(16, ge=1)
    """Text (non-file) fields of one multipart body, such as `model`, `version` and `top_k`."""
    max_form_field_bytes: int = Field(64 * 1024, ge=1)
    """Size of one multipart text field in bytes (file parts are bounded by `max_image_bytes`)."""


class ExplainSettings(BaseModel):
    """Explanations (`/v1/*/explain`, `/v2/models/{name}/explain`): their own admission lane and their cost caps."""

    # The docstring under each field becomes its description (docs, `settings_table`).
    model_config = ConfigDict(use_attribute_docstrings=True)

    max_in_flight: int = Field(4, ge=1)
    """Explanation requests being worked on at once, apart from `max_requests_in_flight`; past it 429 at once."""
    max_passes: int = Field(512, ge=2)
    """Forward passes (model rows) one explained input may cost; a vision occlusion patch grows to fit it."""
    max_items: int = Field(8, ge=1)
    """Images or texts one explanation request may carry (tabular rows cost one pass each: `max_samples`)."""
    occlusion_patch: int = Field(4, ge=1)
    """Side in pixels of the square an occlusion pass blanks out (model input resolution)."""
    max_points: int = Field(10, ge=1)
    """Points listed per flagged series segment, the largest contributions first."""


class HttpSettings(BaseModel):
    """Connection-level limits the HTTP server enforces before a request reaches the app (`python -m service`)."""

    # The docstring under each field becomes its description (docs, `settings_table`).
    model_config = ConfigDict(use_attribute_docstrings=True)

    header_timeout_s: float = Field(5.0, gt=0)
    """Time from connecting (or from a kept-alive request's first byte) to the end of its headers;
    past it 408 and close."""
    body_timeout_s: float = Field(10.0, gt=0)
    """Time from the end of the headers to the end of the body (paused while the app is not reading);
    past it 408 and close."""
    write_timeout_s: float = Field(10.0, gt=0)
    """How long an answer may wait for a client that reads none of it; then the connection is dropped."""
    keep_alive_s: float = Field(5.0, gt=0)
    """An idle kept-alive connection is closed this long after its last answer."""
    max_connections: int = Field(2048, ge=1)
    """Open connections; capped below the open-file limit. Past it a stalled connection is dropped, else 503 at once."""
    max_header_bytes: int = Field(32 * 1024, ge=1024)
    """Bytes of request line plus headers; past it 431 and close."""
    max_headers: int = Field(100, ge=1)
    """Header fields per request; past it 431 and close."""


class AuthSettings(BaseModel):
    """Bearer tokens: inference is open without a token; management is closed without one."""

    # The docstring under each field becomes its description (docs, `settings_table`).
    model_config = ConfigDict(use_attribute_docstrings=True)

    inference_token: SecretStr | None = None
    """Token the inference API (task endpoints, /v1/models, /v2 metadata and infer) demands; None leaves it open."""
    management_token: SecretStr | None = None
    """Token the repository API (index, load, unload) demands; None keeps that API refused (403)."""
    local_management: bool | None = None
    """Loopback clients may use the repository API without the token; None: only while `host` is a loopback address."""
    protect_health: bool = False
    """Put /v2/health/* behind the inference token too (load balancer probes then need it)."""
    protect_metrics: bool = False
    """Put /metrics behind the inference token too."""


class Settings(BaseSettings):
    """The service's configuration; build one with `Settings()` (environment) or keyword arguments (tests)."""

    model_config = SettingsConfigDict(
        env_prefix="AXON_", env_nested_delimiter="__", extra="ignore", use_attribute_docstrings=True
    )

    host: str = "127.0.0.1"
    """Interface `python -m service` binds to (0.0.0.0 in containers)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port `python -m service` listens on."""
    grpc_port: int | None = Field(None, ge=0, le=65535)
    """Port of the KServe V2 / Triton gRPC service on `host` (Triton uses 8001); None (default) opens no gRPC port."""
    grpc_compression: Literal["none", "deflate", "gzip"] = "none"
    """Compression of the gRPC service's answers (Triton: --grpc-infer-response-compression-level), for clients that
    accept it; compressed requests are read whatever this says."""
    workers: int = Field(1, ge=1)
    """Server processes sharing the port, each with its own sessions and batchers (README: Scaling out)."""
    model_repository: Path = Path("models")
    """Folder holding `<name>/config.json` and `<name>/<version>/model.onnx`."""

    providers: Annotated[list[str], NoDecode] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    """ONNX Runtime execution providers in order of preference; CUDA is used only if it really loads."""
    require_gpu: bool = False
    """Refuse to serve a model on CPU when a GPU provider was asked for but did not load."""
    gpu_device_id: int = Field(0, ge=0)
    """CUDA device the GPU providers run on, unless a model's instance_group lists its own `gpus`."""
    intra_op_threads: int = Field(0, ge=0)
    """ONNX Runtime threads inside one operator (0 = one per core); a version's non-GPU instances share them."""
    instance_count: int | None = Field(None, ge=1, le=64)
    """Sessions per instance group of every model, overriding config.json's `count` (None: each model's own)."""
    inter_op_threads: int = Field(1, ge=1)
    """ONNX Runtime threads across independent operators (sequential execution uses 1)."""
    warmup_runs: int = Field(2, ge=0)
    """Runs per warm-up shape before a model is reported ready."""

    batching_enabled: bool = True
    """False runs one session.run per request (the benchmark's unbatched reference)."""
    max_batch_size: int | None = Field(None, ge=1)
    """Rows per batch for every model; None takes each model's config.json."""
    max_delay_ms: float | None = Field(None, ge=0)
    """How long a batch may wait for more rows after its first; None takes config.json."""
    max_queue_size: int | None = Field(None, ge=1)
    """Rows that may wait per model version before requests get 429; None takes config.json."""
    max_pad_ratio: float = Field(2.0, ge=0)
    """A text batch runs as groups whose longest row is at most this many times their shortest (0 = one run)."""
    request_timeout_s: float = Field(30.0, gt=0)
    """Deadline of one request from the moment it is queued; past it the answer is 504."""

    # --- the request path (admission before any HTTP work) ---
    max_requests_in_flight: int = Field(512, ge=1)
    """Inference requests (V2 infer, task endpoints) being read, decoded, queued or run at once; past it 429 at once."""

    default_models: DefaultModels = DefaultModels()
    """Per-task default models."""
    explain: ExplainSettings = ExplainSettings()
    """Explanation lane and costs (`AXON_EXPLAIN__MAX_PASSES`, `AXON_EXPLAIN__MAX_IN_FLIGHT`, ...)."""
    limits: Limits = Limits()
    """Per-request limits."""
    strict_readiness: bool = False
    """True keeps /v2/health/ready at 503 while any model is unavailable, not only while loading."""

    auth: AuthSettings = AuthSettings()
    """Access control (`AXON_AUTH__INFERENCE_TOKEN`, `AXON_AUTH__MANAGEMENT_TOKEN`, ...)."""
    ui: bool = True
    """Serve the web page at /ui (and redirect / to it); False answers 404 there."""
    cors_origins: Annotated[list[str], NoDecode] = []
    """Browser origins allowed by CORS (JSON list or commas); empty keeps CORS off."""
    repository_poll_interval_s: float | None = Field(None, gt=0)
    """Rescan the repository this often and (re)load changed models; None (default) loads only on request."""
    validate_models: bool = True
    """Check every ONNX file in a child process before the server opens it (crash, escape and test-run checks)."""
    validation_timeout_s: float = Field(60.0, gt=0)
    """How long that child may take before the version is refused."""
    validation_memory_limit_mb: int | None = Field(8192, ge=64)
    """Address-space cap of that child in MiB (None: no cap)."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Threshold of the service's logs."""
    log_json: bool = False
    """Write logs as JSON lines (one object per line) instead of plain text."""
    access_log: bool = True
    """Log one line per HTTP request with its status, duration and request id."""
    shutdown_delay_s: float = Field(0.0, ge=0)
    """After SIGTERM, how long readiness answers 503 while still accepting requests (for load balancers)."""
    drain_timeout_s: float = Field(30.0, gt=0)
    """After SIGTERM, how long queued and running requests may take to finish before the process exits."""
    http: HttpSettings = HttpSettings()
    """Connection timeouts and limits (`AXON_HTTP__HEADER_TIMEOUT_S`, `AXON_HTTP__MAX_CONNECTIONS`, ...)."""

    @field_validator("providers", "cors_origins", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("providers")
    @classmethod
    def _known_shape(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one execution provider is needed")
        return value


def settings_table() -> str:
    """Every setting as a Markdown table row: environment variable, default, description (for the README)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, f"{prefix}{name.upper()}__")
                continue
            default = field.get_default(call_default_factory=True)
            shown = json.dumps(default) if isinstance(default, list) else ("" if default is None else str(default))
            # A docstring wrapped over several lines is one table cell.
            meaning = " ".join((field.description or "").split())
            rows.append(f"| `{prefix}{name.upper()}` | `{shown}` | {meaning} |")

    walk(Settings, "AXON_")
    return "\n".join(rows)
