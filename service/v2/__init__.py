"""Open Inference Protocol (KServe V2) wire types, tensor codecs and Triton's binary tensor extension.

Protocol-level and HTTP-free: they raise `service.errors.ProtocolError`, which the route layer renders
as a 400 `{"error": ...}`.
"""
