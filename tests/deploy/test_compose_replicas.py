"""Static checks of the `replicas` compose profile and its nginx balancer (the live run is scripts/docker-smoke.sh).

The smoke test shows 0 failed requests while a replica stops; these keep the settings that make that
true from drifting: the balancer's retry rules, the replicas' drain, and the api service left alone.
"""

from __future__ import annotations

import re
import subprocess

from tests.deploy.test_docker_static import COMPOSE, ROOT, compose_config, seconds, tool

NGINX = ROOT / "deploy/nginx"


def locations() -> dict[str, str]:
    """nginx.conf's location blocks: the pattern -> the block's text."""
    text = (NGINX / "nginx.conf").read_text()
    return {m.group(1).strip(): m.group(2) for m in re.finditer(r"location ([^{]+)\{([^}]*)\}", text)}


def test_profile_runs_three_unpublished_replicas_of_the_api_behind_the_balancer() -> None:
    config = compose_config(COMPOSE, profiles=("replicas",))
    services = config["services"]
    api, replica, lb = services["api"], services["api-replica"], services["lb"]
    assert replica["deploy"]["replicas"] == 3
    assert replica["image"] == api["image"] and replica["volumes"] == api["volumes"]
    assert not replica.get("ports"), "replicas are reached through the balancer only"
    assert lb["build"]["context"] == str(NGINX)
    assert lb["depends_on"]["api-replica"]["condition"] == "service_healthy"
    assert [p["target"] for p in lb["ports"]] == [8080]
    assert "server api-replica:8000" in (NGINX / "nginx.conf").read_text()


def test_replicas_drain_within_their_grace_period() -> None:
    replica = compose_config(COMPOSE, profiles=("replicas",))["services"]["api-replica"]
    env = replica["environment"]
    delay, drain = float(env["AXON_SHUTDOWN_DELAY_S"]), float(env["AXON_DRAIN_TIMEOUT_S"])
    assert delay > 0, "without a delay a replica refuses requests nginx already routed to it"
    assert seconds(replica["stop_grace_period"]) > delay + drain


def test_the_profile_leaves_the_default_api_as_it_was() -> None:
    plain = compose_config(COMPOSE)["services"]
    assert set(plain) == {"api"}
    assert plain["api"] == compose_config(COMPOSE, profiles=("replicas",))["services"]["api"]


def test_only_inference_is_resent_after_a_request_reached_a_replica() -> None:
    blocks = locations()
    inference = next(body for pattern, body in blocks.items() if "infer" in pattern)
    assert re.search(r"proxy_next_upstream error timeout http_503 non_idempotent;", inference)
    assert "proxy_next_upstream_timeout" in inference
    rest = blocks["/"]
    assert "non_idempotent" not in rest and "http_503" not in rest
    assert "http_429" not in (NGINX / "nginx.conf").read_text(), "retrying overload multiplies it"
    pattern = next(p for p in blocks if "infer" in p).removeprefix("~").strip()
    for path in (
        "/v1/vision/classify",
        "/v1/text/classify",
        "/v1/anomaly/score",
        "/v2/models/mnist-cnn/infer",
        "/v2/models/mnist-cnn/versions/2/infer",
    ):
        assert re.match(pattern, path), path
    for path in ("/v2/repository/models/mnist-cnn/load", "/v2/models/mnist-cnn", "/metrics"):
        assert not re.match(pattern, path), path


def test_no_keepalive_pool_to_the_replicas() -> None:
    """A pooled connection a stopping replica closes would fail a POST after sending it: not retryable."""
    assert not re.search(r"^\s*keepalive\s", (NGINX / "nginx.conf").read_text(), re.M)


def test_balancer_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [tool("hadolint"), "--no-color", str(NGINX / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
