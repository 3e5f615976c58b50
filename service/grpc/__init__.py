"""The KServe V2 / Triton gRPC front end (`inference.GRPCInferenceService`) over the same data plane as REST."""
