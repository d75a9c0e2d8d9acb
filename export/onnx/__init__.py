"""ONNX export: encoder and decoder graphs, model.json, parity against torch, weights registry."""
