"""The gRPC servicer without a server: its credential rules per kind of RPC (REST's, tested in test_access), and
what it checks of a repository request before the lifecycle sees it."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from service.errors import Unauthorized
from service.grpc.proto import grpc_service_pb2 as pb
from service.grpc.servicer import Servicer, peer_host
from tests.support.app_harness import tiny_settings

Metadatum = namedtuple("Metadatum", "key value")
TOKEN = "inference-token"
MANAGEMENT = "management-token"


class Context:
    """What `authorize` reads of a grpc.aio context: the invocation metadata and the peer."""

    def __init__(self, token: str | None = None, peer: str = "ipv4:10.0.0.7:5000") -> None:
        self.metadata = [Metadatum("authorization", f"Bearer {token}")] if token else []
        self.peer_address = peer

    def invocation_metadata(self) -> list[Metadatum]:
        return self.metadata

    def peer(self) -> str:
        return self.peer_address


def servicer(tmp_path: Path, **auth: object) -> Servicer:
    settings = tiny_settings(tmp_path, auth={"inference_token": TOKEN, "management_token": MANAGEMENT, **auth})
    return Servicer(SimpleNamespace(dataplane=None, settings=settings))  # authorize reads only the settings


def test_health_is_open_unless_protected(tmp_path):
    servicer(tmp_path).authorize("open", Context())
    protected = servicer(tmp_path, protect_health=True)
    with pytest.raises(Unauthorized, match="Bearer"):
        protected.authorize("open", Context())
    protected.authorize("open", Context(TOKEN))


def test_inference_needs_its_token(tmp_path):
    rules = servicer(tmp_path)
    with pytest.raises(Unauthorized):
        rules.authorize("inference", Context())
    with pytest.raises(Unauthorized, match="not valid"):
        rules.authorize("inference", Context(MANAGEMENT))
    rules.authorize("inference", Context(TOKEN))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_management_from_a_loopback_peer_follows_local_management(tmp_path, host):
    peer = f"ipv4:{host}:5000" if "." in host else f"ipv6:[{host}]:5000"
    servicer(tmp_path, local_management=True).authorize("management", Context(peer=peer))
    with pytest.raises(Unauthorized):
        servicer(tmp_path, local_management=True).authorize("management", Context())  # a remote peer
    with pytest.raises(Unauthorized):
        servicer(tmp_path, local_management=False).authorize("management", Context(peer=peer))
    servicer(tmp_path, local_management=False).authorize("management", Context(MANAGEMENT, peer=peer))


@pytest.mark.parametrize(
    ("peer", "host"),
    [("ipv4:127.0.0.1:5000", "127.0.0.1"), ("ipv6:[::1]:5000", "::1"), ("unix:/tmp/axon.sock", "")],
)
def test_the_peer_string_gives_the_bare_address(peer, host):
    assert peer_host(peer) == host


async def test_a_repository_request_is_refused_for_its_name_first(tmp_path):
    # REST checks the name before the body; so does gRPC, whatever else the request gets wrong.
    aborted = []

    class Aborting(Context):
        async def abort(self, code: grpc.StatusCode, message: str) -> None:
            aborted.append((code, message))

    settings = tiny_settings(tmp_path, auth={"local_management": True})
    state = SimpleNamespace(dataplane=None, settings=settings, check_single_process=lambda: None)
    request = pb.RepositoryModelLoadRequest(
        model_name="../etc", parameters={"config": pb.ModelRepositoryParameter(string_param="{}")}
    )
    await Servicer(state).RepositoryModelLoad(request, Aborting(peer="ipv4:127.0.0.1:5000"))
    assert aborted == [(grpc.StatusCode.INVALID_ARGUMENT, "model name '../etc' contains a path separator")]
