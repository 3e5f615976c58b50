"""The HTTP floor of issue 14: a bare ASGI app that reads the whole body and answers 40 fixed bytes.

`peers.py floor` serves it with uvicorn + httptools + uvloop on the server core and loads it with each
benchmark body, so every goal's ratio can be read against what the HTTP stack alone costs on this machine.
"""

from __future__ import annotations

from typing import Any

ANSWER = b'{"outputs":[{"name":"y","data":[0.5]}]}\n'  # 40 bytes, as in the issue
HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: nothing to start
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEAD})
    await send({"type": "http.response.body", "body": ANSWER})
