"""The committed gRPC modules are exactly what scripts/gen_protos makes from the vendored protos."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO = ROOT / "service" / "grpc" / "proto"
GENERATED = ["grpc_service_pb2.py", "grpc_service_pb2.pyi", "grpc_service_pb2_grpc.py", "model_config_pb2.py",
             "model_config_pb2.pyi"]  # fmt: skip


def test_generated_modules_match_a_fresh_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = os.environ | {"PYTHON": sys.executable}
    subprocess.run([str(ROOT / "scripts" / "gen_protos"), str(out)], cwd=ROOT, env=env, check=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(GENERATED)
    for name in GENERATED:
        assert (out / name).read_bytes() == (PROTO / name).read_bytes(), f"{name} differs: run scripts/gen_protos"


def test_a_changed_proto_is_noticed(tmp_path):
    """The check above can fail: a proto edited without regenerating gives different modules."""
    copy = tmp_path / "repo"
    (copy / "service" / "grpc").mkdir(parents=True)
    shutil.copytree(PROTO, copy / "service" / "grpc" / "proto")
    (copy / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "gen_protos", copy / "scripts" / "gen_protos")
    proto = copy / "service" / "grpc" / "proto" / "grpc_service.proto"
    proto.write_text(
        proto.read_text().replace("message ServerLiveRequest {}", "message ServerLiveRequest { bool x = 1; }")
    )
    out = tmp_path / "out"
    out.mkdir()
    env = os.environ | {"PYTHON": sys.executable}
    subprocess.run([str(copy / "scripts" / "gen_protos"), str(out)], cwd=copy, env=env, check=True)
    assert (out / "grpc_service_pb2.py").read_bytes() != (PROTO / "grpc_service_pb2.py").read_bytes()
