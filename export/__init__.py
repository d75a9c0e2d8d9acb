"""pt-plugin export package: PixelTransformer in torch, training, evaluation and ONNX export.

Run its parts as `python -m export.train`, `python -m export.onnx`, `python -m export.evaluate`.
"""
