"""Reduced-precision variants of exported graphs: static and weight-only int8, fp16, parity gates."""
