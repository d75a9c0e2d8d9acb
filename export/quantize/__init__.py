"""Reduced-precision variants of exported graphs, each checked against float32 before it is kept.

`python -m export.quantize EXPORT_DIR [--int8] [--fp16]` (__main__: the command and model.json). The room:
  variant.py             one variant start to finish: make, gate, fall back (int8), describe what was kept
  static_int8.py         static int8 (QDQ, fixed calibrated activation scales) and which MatMuls it leaves float32
  fp16.py                float16 weights and compute
  fallback.py            int8 over the gate: which MatMuls go back to float32
  weight_only.py         int8 still over the gate: weight-only int8 (MatMulNBits)
  calibration.py         the padded sets static int8 is calibrated on, as graph inputs
  sources.py             where calibration and parity sets come from (random, auto, or a registered data set)
  parity.py              the parity gate: differences to float32, TOLERANCES
  batch_independence.py  a set's outputs alone vs. batched, padded and chunked
  graphs.py              variant file names, the precision tag, CPU sessions
"""
