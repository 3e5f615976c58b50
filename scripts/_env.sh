# Shared by scripts/serve and scripts/test: one virtualenv in .venv, created on first use, and the project
# installed into it (editable) only when something changed since the last install: pyproject.toml, the
# Python version, or the extras asked for. AXON_REINSTALL=1 forces the install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="${AXON_VENV:-$ROOT/.venv}"
# One stamp file per installed extra, named after a hash of what the install depends on.
STAMPS="$VENV/.axon-installed"
TORCH_VERSION=2.13.0
TORCH_CPU_INDEX="${AXON_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"  # overridable for tests

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
# PYTHONWARNINGS: setuptools prints a banner on every editable install (same-named folders in the working
# directory may shadow the package: true of any editable install, and the reason it is editable).
pip_install() { PYTHONWARNINGS="ignore:Editable installation" "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
say() { echo "[axon] $*" >&2; }

# Which ONNX Runtime the environment gets: AXON_ONNXRUNTIME=cpu (onnxruntime) or gpu (onnxruntime-gpu);
# the default picks gpu on Linux x86_64 where an NVIDIA driver is loaded, cpu everywhere else.
ort_flavour() {
  case "${AXON_ONNXRUNTIME:-auto}" in
    cpu | gpu) echo "$AXON_ONNXRUNTIME" ;;
    auto)
      if [ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] && [ -e /proc/driver/nvidia/version ]; then
        echo gpu
      else
        echo cpu
      fi ;;
    *) say "AXON_ONNXRUNTIME must be cpu, gpu or auto (got '$AXON_ONNXRUNTIME')"; exit 2 ;;
  esac
}

install_key() { { cat "$ROOT/pyproject.toml"; "$VENV/bin/python" -VV; } | sha256sum | cut -c1-16; }

# installed EXTRA...: true when every extra was installed from this pyproject.toml and this Python.
installed() {
  [ "${AXON_REINSTALL:-0}" != 1 ] && [ -x "$VENV/bin/axon" ] || return 1
  local key extra
  key="$(install_key)"
  for extra in "$@"; do [ -e "$STAMPS/$key.$extra" ] || return 1; done
}

# ensure_installed FLAVOUR [EXTRA...]: `pip install -e .[FLAVOUR,EXTRA...]` unless already done.
ensure_installed() {
  installed "$@" && return 0
  local flavour="$1" other=onnxruntime-gpu extras key
  [ "$flavour" = gpu ] && other=onnxruntime
  # onnxruntime and onnxruntime-gpu own the same directory: the other one must go before this one comes.
  # (On platforms without onnxruntime-gpu the gpu extra installs onnxruntime itself: keep it there.)
  if [ "$flavour" = cpu ] || [ "$(uname -s)/$(uname -m)" = Linux/x86_64 ]; then
    if "$VENV/bin/python" -m pip show -q "$other" >/dev/null 2>&1; then
      say "switching ONNX Runtime to the $flavour package: uninstalling $other"
      "$VENV/bin/python" -m pip uninstall -q -y "$other"
    fi
  fi
  extras="$(IFS=,; echo "$*")"
  say "installing .[$extras] into $VENV (only when pyproject.toml, Python or the extras change)"
  pip_install -e "$ROOT[$extras]"
  key="$(install_key)"
  mkdir -p "$STAMPS"
  # Stamps of an older pyproject.toml or Python, and of the flavour just replaced, no longer hold.
  find "$STAMPS" -type f ! -name "$key.*" -delete
  rm -f "$STAMPS/$key.$( [ "$flavour" = gpu ] && echo cpu || echo gpu )"
  for extra in "$@"; do touch "$STAMPS/$key.$extra"; done
}

# Does pip, as configured plus "$@", see the CPU build of torch? Bounded: 10 s per request, no retries.
offers_cpu_torch() {
  local listed
  listed="$(timeout 90 "$VENV/bin/python" -m pip index versions torch --timeout 10 --retries 0 "$@" 2>/dev/null || true)"
  # Not piped into `grep -q`: under pipefail, pip killed by the early-closed pipe would turn a match into "no".
  grep -q "^Available versions:.*[ ,]$TORCH_VERSION+cpu\b" <<<"$listed"
}

# torch==2.13.0, the CPU build wherever that is a separate wheel (Linux): PyPI's Linux torch pulls several GB
# of CUDA packages. AXON_TORCH_INDEX_URL=URL adds that index instead (e.g. .../whl/cu130 for CUDA);
# AXON_TORCH_INDEX_URL= (empty) uses pip's configuration as it is.
install_torch() {
  if "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    return 0
  fi
  local index=()
  if [ -n "${AXON_TORCH_INDEX_URL+set}" ]; then
    [ -z "$AXON_TORCH_INDEX_URL" ] || index=(--extra-index-url "$AXON_TORCH_INDEX_URL")
  elif [ "$(uname -s)" = Linux ]; then
    if offers_cpu_torch; then
      say "torch $TORCH_VERSION+cpu from pip's configured sources"
    elif offers_cpu_torch --extra-index-url "$TORCH_CPU_INDEX"; then
      say "torch $TORCH_VERSION+cpu from $TORCH_CPU_INDEX"
      index=(--extra-index-url "$TORCH_CPU_INDEX")
    else
      say "WARNING: neither pip's configured sources nor $TORCH_CPU_INDEX offer torch $TORCH_VERSION+cpu:" \
        "installing torch from the configured index, which on Linux brings its CUDA packages (GBs)." \
        "Set AXON_TORCH_INDEX_URL to a CPU wheel index to avoid that."
    fi
  fi
  pip_install "torch==$TORCH_VERSION" ${index[@]+"${index[@]}"}
}
