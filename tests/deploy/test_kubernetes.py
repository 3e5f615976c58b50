"""Offline checks of deploy/kubernetes: rendering, schemas, custom resources, and what the pods must do.

No cluster runs here. The committed renders in deploy/kubernetes/rendered/ are checked against their
sources (by `kubectl kustomize` where kubectl exists, by a digest of the sources everywhere), then every
object is validated: core kinds against the Kubernetes OpenAPI schemas that kubernetes-validate ships,
KServe, KEDA and Prometheus Operator kinds against their CRDs vendored in deploy/kubernetes/crds/.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tarfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.metrics import Metrics
from service.repository import discover
from service.settings import Settings, settings_table

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/kubernetes"
RENDERED = K8S / "rendered"
CRDS = K8S / "crds"
# The oldest Kubernetes these manifests promise to work on, and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.32.0", "1.37.0")
CUSTOM_GROUPS = ("serving.kserve.io", "keda.sh", "monitoring.coreos.com")

Obj = dict[str, Any]


def load_render_module() -> Any:
    """deploy/kubernetes/render.py, which is a script, not a package module."""
    spec = importlib.util.spec_from_file_location("k8s_render", K8S / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_render_module()
TARGETS: list[str] = sorted(render.targets())


@cache
def objects(target: str) -> list[Obj]:
    """The objects of one committed render."""
    path = RENDERED / f"{target}.yaml"
    assert path.is_file(), f"{path} missing: run python deploy/kubernetes/render.py"
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(target: str, kind: str, name: str | None = None) -> Obj:
    """The single object of `kind` (and `name`) in a render."""
    found = [o for o in objects(target) if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{target}: expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(target: str) -> Iterator[tuple[str, Obj]]:
    """(owner, pod spec) of every pod template: Deployments here, ServingRuntimes for KServe."""
    for obj in objects(target):
        if obj["kind"] == "Deployment":
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "ServingRuntime":
            yield obj["metadata"]["name"], obj["spec"]


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def settings_of(target: str) -> dict[str, str]:
    """The AXON_* values a server container sees from its ConfigMap and literal env entries."""
    values: dict[str, str] = {}
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objects(target) if o["kind"] == "ConfigMap"}
    for _, spec in pod_specs(target):
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                values.update(maps[source["configMapRef"]["name"]])
            values.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
    return values


# ---------------------------------------------------------------------------------------------
# Rendering


def test_every_kustomization_has_a_committed_render() -> None:
    assert set(TARGETS) >= {"cpu", "gpu", "kserve"}
    assert {p.stem for p in RENDERED.glob("*.yaml")} == set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_committed_render_matches_its_sources(target: str) -> None:
    """Stale renders fail: by digest always, and object by object wherever kubectl can render."""
    text = (RENDERED / f"{target}.yaml").read_text()
    recorded = next(line for line in text.splitlines() if line.startswith(render.DIGEST_PREFIX))
    assert recorded.removeprefix(render.DIGEST_PREFIX) == render.sources_digest(), (
        "deploy/kubernetes sources changed since the last render: run python deploy/kubernetes/render.py"
    )
    if shutil.which("kubectl"):
        fresh = [d for d in yaml.safe_load_all(render.kustomize(render.targets()[target])) if d]
        assert fresh == objects(target)


def test_digest_covers_every_source_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit anywhere under the sources changes the digest (so the test above notices it)."""
    for folder in render.SOURCE_DIRS:
        shutil.copytree(K8S / folder, tmp_path / folder)
    monkeypatch.setattr(render, "HERE", tmp_path)
    before = render.sources_digest()
    patch = tmp_path / "overlays/gpu/scaledobject-gpu.yaml"
    patch.write_text(patch.read_text().replace("maxReplicaCount: 4", "maxReplicaCount: 5"))
    assert render.sources_digest() != before


# ---------------------------------------------------------------------------------------------
# Schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_core_objects_validate_against_kubernetes_schemas(target: str, version: str) -> None:
    core = [o for o in objects(target) if o["apiVersion"].split("/")[0] not in CUSTOM_GROUPS]
    assert core or target == "kserve"
    for obj in core:
        # strict: an unknown field (a typo) is an error, as with kubectl's server-side validation.
        kubernetes_validate.validate(obj, version, strict=True)


def test_kubernetes_schema_check_rejects_a_misspelt_field() -> None:
    deployment = yaml.safe_load(yaml.safe_dump(one("cpu", "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def strict(schema: Any) -> Any:
    """A CRD's OpenAPI schema with unknown fields refused wherever the API server would prune them."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> the vendored CRD's openAPIV3Schema for that version, made strict."""
    schemas = {}
    for path in CRDS.glob("*.yaml"):
        # The InferenceService CRD is 2 MB: libyaml's loader reads it in a fraction of the pure-Python time.
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def validate_custom(obj: Obj) -> None:
    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    assert schema is not None, f"no vendored CRD for {obj['apiVersion']} {obj['kind']}"
    jsonschema.Draft4Validator(schema).validate(obj)


@pytest.mark.parametrize("target", TARGETS)
def test_custom_resources_validate_against_vendored_crds(target: str) -> None:
    custom = [o for o in objects(target) if o["apiVersion"].split("/")[0] in CUSTOM_GROUPS]
    expected = {"ScaledObject", "ServiceMonitor"} if target != "kserve" else {"ServingRuntime", "InferenceService"}
    assert {o["kind"] for o in custom} == expected
    for obj in custom:
        validate_custom(obj)


def test_crd_check_rejects_a_misspelt_field_and_a_wrong_type() -> None:
    runtime = yaml.safe_load(yaml.safe_dump(one("kserve", "ServingRuntime")))
    runtime["spec"]["protocolVersion"] = ["v2"]  # the field is protocolVersions
    with pytest.raises(jsonschema.ValidationError, match="protocolVersion"):
        validate_custom(runtime)
    scaler = yaml.safe_load(yaml.safe_dump(one("cpu", "ScaledObject")))
    scaler["spec"]["maxReplicaCount"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom(scaler)


def test_vendored_crds_are_documented_with_source_and_version() -> None:
    readme = (K8S / "README.md").read_text()
    for path in CRDS.glob("*.yaml"):
        assert path.name in readme, f"{path.name} has no source/version line in deploy/kubernetes/README.md"


# ---------------------------------------------------------------------------------------------
# What the pods do


KNOWN_SETTINGS = set(re.findall(r"^\| `(AXON_[A-Z0-9_]+)`", settings_table(), re.M))


@pytest.mark.parametrize("target", TARGETS)
def test_every_axon_variable_is_a_real_setting_with_a_valid_value(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings ignores unknown AXON_* names, so a misspelt one would silently do nothing."""
    names: set[str] = set(settings_of(target))
    for _, spec in pod_specs(target):
        names |= {e["name"] for c in spec["containers"] for e in c.get("env", [])}
    axon = {n for n in names if n.startswith("AXON_")}
    assert axon and axon <= KNOWN_SETTINGS, sorted(axon - KNOWN_SETTINGS)
    for name, value in settings_of(target).items():
        monkeypatch.setenv(name, value)
    Settings()  # parses every literal value with the service's own types


@pytest.mark.parametrize("target", TARGETS)
def test_pods_run_non_root_read_only_without_privileges(target: str) -> None:
    specs = list(pod_specs(target))
    assert specs
    for owner, spec in specs:
        pod = spec.get("securityContext", {})
        for c in containers(spec):
            ctx = c.get("securityContext", {})
            where = f"{target}/{owner}/{c['name']}"
            assert ctx.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("privileged", False) is False, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
            assert ctx.get("seccompProfile", pod.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(kind, {})), f"{where} {kind}"
        mounts = {m["mountPath"] for m in spec["containers"][0].get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{target}/{owner}: a read-only root needs a writable /tmp"


@pytest.mark.parametrize("target", TARGETS)
def test_onnx_runtime_threads_follow_the_cpu_limit(target: str) -> None:
    for _, spec in pod_specs(target):
        server = spec["containers"][0]
        env = {e["name"]: e for e in server.get("env", [])}
        ref = env["AXON_INTRA_OP_THREADS"]["valueFrom"]["resourceFieldRef"]
        assert ref["resource"] == "limits.cpu" and ref["containerName"] == server["name"]
        assert str(ref.get("divisor", "1")) == "1"  # whole cores, rounded up by the kubelet
        assert "cpu" in server["resources"]["limits"]


@pytest.mark.parametrize("target", TARGETS)
def test_probes_use_the_v2_health_routes_on_the_served_port(target: str) -> None:
    port = int(settings_of(target)["AXON_PORT"])
    for _, spec in pod_specs(target):
        server = spec["containers"][0]
        named = {p["name"]: p["containerPort"] for p in server["ports"]}
        assert port in named.values()
        paths = {}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            if probe in server:
                get = server[probe]["httpGet"]
                assert named.get(get["port"], get["port"]) == port, probe
                paths[probe] = get["path"]
        assert paths["readinessProbe"] == "/v2/health/ready"
        assert paths["livenessProbe"] == "/v2/health/live"


def grace_period(target: str) -> int:
    """terminationGracePeriodSeconds that the pods get (the InferenceService sets it for KServe)."""
    if target == "kserve":
        return one(target, "InferenceService")["spec"]["predictor"]["terminationGracePeriodSeconds"]
    return one(target, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("target", TARGETS)
def test_kubelet_waits_longer_than_the_shutdown_delay_and_drain(target: str) -> None:
    values = settings_of(target)
    delay, drain = float(values["AXON_SHUTDOWN_DELAY_S"]), float(values["AXON_DRAIN_TIMEOUT_S"])
    assert delay > 0, "without a delay requests still routed to a stopping pod are refused"
    assert grace_period(target) > delay + drain


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "kserve"])
def test_tokens_come_from_a_secret_that_is_never_committed(target: str) -> None:
    assert not [o for o in objects(target) if o["kind"] == "Secret"]
    assert not any(name.startswith("AXON_AUTH__") and "TOKEN" in name for name in settings_of(target))
    env = {e["name"]: e for e in one(target, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    for name in ("AXON_AUTH__INFERENCE_TOKEN", "AXON_AUTH__MANAGEMENT_TOKEN"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "axon-tokens", name


def test_gpu_overlay_asks_for_a_gpu_node_and_refuses_to_fall_back_to_cpu() -> None:
    spec = one("gpu", "Deployment")["spec"]["template"]["spec"]
    server = spec["containers"][0]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert settings_of("gpu")["AXON_PROVIDERS"].startswith("CUDAExecutionProvider")
    assert settings_of("gpu")["AXON_REQUIRE_GPU"] == "true"
    cpu = one("cpu", "Deployment")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"] and "nodeSelector" not in cpu
    assert settings_of("cpu")["AXON_PROVIDERS"] == "CPUExecutionProvider"


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "kserve"])
def test_model_repository_is_a_volume(target: str) -> None:
    spec = one(target, "Deployment")["spec"]["template"]["spec"]
    repository = settings_of(target)["AXON_MODEL_REPOSITORY"]
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == repository)
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    for volume in volumes.values():
        assert len(set(volume) - {"name"}) == 1, f"{volume['name']} has more than one source"
    source = volumes[mount["name"]]
    if target == "models-pvc":
        assert source["persistentVolumeClaim"]["claimName"] == one(target, "PersistentVolumeClaim")["metadata"]["name"]
        assert not spec.get("initContainers")
    else:
        # Default: the models baked into the image, copied into the volume by the same image.
        seed = next(c for c in spec["initContainers"] if c["name"] == "models")
        assert "emptyDir" in source and seed["image"] == spec["containers"][0]["image"]
        target_dir = next(m["mountPath"] for m in seed["volumeMounts"] if m["name"] == mount["name"])
        assert seed["command"][-2:] == ["/models/.", f"{target_dir}/"]


def exported_metric_names() -> set[str]:
    return {metric.name for metric in Metrics().registry.collect()}


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "kserve"])
def test_autoscaler_scales_the_deployment_on_a_metric_axon_exports(target: str) -> None:
    scaler = one(target, "ScaledObject")
    assert scaler["spec"]["scaleTargetRef"]["name"] == one(target, "Deployment")["metadata"]["name"]
    assert 1 <= scaler["spec"]["minReplicaCount"] <= scaler["spec"]["maxReplicaCount"]
    prometheus = next(t for t in scaler["spec"]["triggers"] if t["type"] == "prometheus")
    assert prometheus["metricType"] == "AverageValue"  # the total divided by the replica count
    query = prometheus["metadata"]["query"]
    used = set(re.findall(r"\baxon_[a-z_]+", query))
    assert used and used <= exported_metric_names(), used
    namespace = one(target, "Deployment")["metadata"]["namespace"]
    service = one(target, "Service")["metadata"]["name"]
    assert f'namespace="{namespace}"' in query and f'service="{service}"' in query
    assert float(prometheus["metadata"]["threshold"]) > 0


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "kserve"])
def test_service_monitor_pdb_and_network_policy_select_the_pods(target: str) -> None:
    deployment = one(target, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(target, "Service")

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    assert selects(service["spec"]["selector"], pod_labels)
    assert selects(one(target, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    policy = one(target, "NetworkPolicy")["spec"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert policy["egress"] == [] and "Egress" in policy["policyTypes"]
    monitor = one(target, "ServiceMonitor")["spec"]
    assert selects(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["endpoints"]} <= port_names
    assert [e["path"] for e in monitor["endpoints"]] == ["/metrics"]


# ---------------------------------------------------------------------------------------------
# KServe


def test_serving_runtime_declares_onnx_over_rest_v2_only() -> None:
    runtime = one("kserve", "ServingRuntime")["spec"]
    assert [f["name"] for f in runtime["supportedModelFormats"]] == ["onnx"]
    assert runtime["protocolVersions"] == ["v2"]  # no grpc-v2: Axon has no gRPC endpoint yet
    server = runtime["containers"][0]
    assert server["name"] == "kserve-container"
    assert [p["containerPort"] for p in server["ports"]] == [int(settings_of("kserve")["AXON_PORT"])]
    isvc = one("kserve", "InferenceService")["spec"]["predictor"]["model"]
    assert isvc["runtime"] == one("kserve", "ServingRuntime")["metadata"]["name"]
    assert isvc["modelFormat"]["name"] == "onnx" and isvc["protocolVersion"] == "v2"
    assert isvc["storageUri"]


def kserve_settings(monkeypatch: pytest.MonkeyPatch, mnt: Path) -> Settings:
    """The settings Axon builds from the ServingRuntime's env, with /mnt/models moved under tmp."""
    values = settings_of("kserve")
    assert values["AXON_MODEL_REPOSITORY"] == "/mnt/models"  # where KServe's storage initializer writes
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AXON_MODEL_REPOSITORY", str(mnt))
    return Settings()


def test_axon_serves_the_layout_a_folder_storage_uri_downloads_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder storageUri is copied with its relative paths into /mnt/models (kserve_storage._download_s3 & co)."""
    mnt = tmp_path / "mnt/models"
    shutil.copytree(ROOT / "models/mnist-cnn", mnt / "mnist-cnn")
    settings = kserve_settings(monkeypatch, mnt)
    found = discover(settings.model_repository)
    assert [(d.name, d.version, d.error) for d in found] == [("mnist-cnn", 1, None)]
    assert all(d.model_file.is_file() for d in found)


def test_axon_serves_the_layout_an_archive_storage_uri_unpacks_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .tar.gz storageUri is unpacked into /mnt/models with extractall(filter="data") and removed."""
    archive = tmp_path / "repository.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(ROOT / "models/thyroid-autoencoder", arcname="thyroid-autoencoder")
    mnt = tmp_path / "mnt/models"
    mnt.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(mnt, filter="data")
    found = discover(kserve_settings(monkeypatch, mnt).model_repository)
    assert [(d.name, d.version, d.error) for d in found] == [("thyroid-autoencoder", 1, None)]


def test_a_bare_model_file_storage_uri_is_not_a_repository(tmp_path: Path) -> None:
    """storageUri naming one model.onnx lands as /mnt/models/model.onnx: Axon finds no model there."""
    mnt = tmp_path / "mnt/models"
    mnt.mkdir(parents=True)
    shutil.copy(ROOT / "models/mnist-cnn/1/model.onnx", mnt / "model.onnx")
    assert discover(mnt) == []


# ---------------------------------------------------------------------------------------------
# Security lint


def test_checkov_config_skips_only_documented_checks() -> None:
    """The lint (checkov, run outside the suite: see deploy/kubernetes/README.md) skips nothing silently."""
    config = yaml.safe_load((K8S / ".checkov.yaml").read_text())
    readme = (K8S / "README.md").read_text()
    assert config["directory"] == ["deploy/kubernetes/rendered"]
    for check in config.get("skip-check", []):
        assert check in readme, f"{check} is skipped without a reason in deploy/kubernetes/README.md"


# ---------------------------------------------------------------------------------------------
# The distributed training job (a plain manifest, not a kustomization: it needs the training operator)

TRAINING_JOB = K8S / "training/pytorchjob.yaml"


def training_job() -> Obj:
    return yaml.safe_load(TRAINING_JOB.read_text())


def test_training_job_validates_against_the_pytorchjob_crd() -> None:
    job = training_job()
    validate_custom(job)
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replica"] = 3  # the field is replicas
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        validate_custom(job)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_training_job_pods_validate_against_kubernetes_schemas(version: str) -> None:
    for role, replica in training_job()["spec"]["pytorchReplicaSpecs"].items():
        pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role.lower()}}
        pod["template"] = replica["template"]
        kubernetes_validate.validate(pod, version, strict=True)


def test_training_job_runs_torchrun_on_the_training_cli_with_a_global_batch_that_divides() -> None:
    from training.cli import build_parser

    job = training_job()
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1
    nproc = int(job["spec"]["nprocPerNode"])
    world = nproc * sum(s["replicas"] for s in specs.values())
    for role, replica in specs.items():
        spec = replica["template"]["spec"]
        (trainer,) = spec["containers"]
        assert trainer["name"] == "pytorch", "the operator injects the rendezvous into the container named pytorch"
        assert trainer["command"] == ["torchrun"] and trainer["args"][:2] == ["-m", "training"]
        args = build_parser().parse_args(trainer["args"][2:])  # a misspelt flag fails here
        assert args.command == "train" and args.batch_size % world == 0, (role, args.batch_size, world)
        assert str(args.repository) == "/models"
        assert nproc <= int(trainer["resources"]["limits"]["cpu"]), "one core per process"
        ctx, pod = trainer["securityContext"], spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m for m in trainer["volumeMounts"]}
        assert {"/tmp", "/dev/shm", "/models"} <= set(mounts)
        claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
        assert claims[mounts["/models"]["name"]] == "axon-models", "the claim the serving pods poll"
