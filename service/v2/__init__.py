"""Open Inference Protocol (KServe V2) wire types, tensor codecs and Triton's binary tensor extension.

Protocol-level and HTTP-free: the route layer turns `ProtocolError` into a 400 `{"error": ...}`.
"""

from service.v2.errors import ProtocolError

__all__ = ["ProtocolError"]
