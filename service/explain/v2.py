"""KServe-style `POST /v2/models/{name}[/versions/{version}]/explain`, taking the model's task body.

KServe's V1 protocol has `:explain` beside `:predict`; its V2 (Open Inference) protocol defines no explain
call, and an `explain` parameter on `/infer` would have to answer in tensors. A route of its own answers
the task's explanation JSON (the same as `/v1/<task>/explain`), chosen by the model's config task, and
keeps explanations in their own admission lane.
"""

from __future__ import annotations

from service.dataplane import name_and_version
from service.explain import anomaly, text, vision
from service.lean import Answer, Call, route

HANDLERS = {"vision": vision.explain_call, "text": text.explain_call, "anomaly": anomaly.explain_call}


async def explain_call(call: Call) -> Answer:
    """Find the model's task, then run that task's explanation with the model the path names."""
    name, number = name_and_version(call.params["name"], call.params.get("version"))
    entry = call.state.dataplane.resolve(None, name, number)  # 404 unknown, 503 not ready, before the body
    assert entry.config is not None
    return await HANDLERS[entry.config.task](call, name, number)


ROUTES = [
    route("/v2/models/{name}/explain", explain_call),
    route("/v2/models/{name}/versions/{version}/explain", explain_call),
]
