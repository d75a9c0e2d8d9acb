"""The causal buffer (issue 32): exact autoregressive sampling with cached keys and values.

The observed set S is the context, encoded bidirectionally as always. Drawn positions join a buffer
in drawing order: a buffer token attends to the context, to earlier buffer tokens and to itself; a
query attends to the context and to the buffer so far. Context tokens never attend to the buffer, so
their keys and values never change: a sampler encodes S once, then each drawn value costs one pass of
one token over the cached keys and values (O(K² + NK + N²) for N draws, against O(N(N + K)²) when the
grown set is encoded again for every value, the paper's §4.3 bottleneck). Given S alone nothing
changes: mean and distribution queries are today's computation.

- Training (export.model: `PixelTransformer.forward` with a buffer, `buffer_biases`): one pass with teacher
  forcing. A random buffer G in random order joins S; each buffer position is predicted from S and G_<j
  and ordinary queries from S alone, all through [B, 1, Lq, K] attention biases.
- Sampling (`context_caches`, `cached_step`): what the exported context.onnx and step.onnx compute.
  Caches are [layers, B, heads, T, dh] per encoder and decoder layer.
"""
from __future__ import annotations

import torch

from export.model import Attention, PixelTransformer, allowed_bias, key_bias

# --------------------------------------------------------------------------- sampling with caches

def _block_pass(blk, x: torch.Tensor, k_cache: torch.Tensor | None, v_cache: torch.Tensor | None,
                bias: torch.Tensor):
    """One encoder block over tokens x [B, n, D] whose keys and values join the cached ones (None: none):
    (x after the block, their keys, their values [B, H, n, dh])."""
    att: Attention = blk.att
    h = blk.ln1(x)
    k_new, v_new = att.keys_values(h)
    k = k_new if k_cache is None else torch.cat([k_cache, k_new], 2)
    v = v_new if v_cache is None else torch.cat([v_cache, v_new], 2)
    x = x + att.attend(h, k, v, bias)
    return x + blk.ff(blk.ln2(x)), k_new, v_new


def _decode(model: PixelTransformer, dec_k: list[torch.Tensor], dec_v: list[torch.Tensor], bias: torch.Tensor,
            query_positions: torch.Tensor):
    """(logits, offsets, log σ) at query positions from the decoder layers' keys and values of every memory token."""
    dec = model.decoder
    b, nq, _ = query_positions.shape
    q = dec.tokens(query_positions)
    for blk, k, v in zip(dec.blocks, dec_k, dec_v):
        q = q + blk.att.attend(blk.ln1(q), k, v, bias)
        q = q + blk.ff(blk.ln2(q))
    return dec.outputs(q, b, nq)


def _memory_caches(model: PixelTransformer, memory: torch.Tensor):
    """Each decoder layer's keys and values [B, H, n, dh] of memory tokens [B, n, D]."""
    pairs = [blk.att.keys_values(memory) for blk in model.decoder.blocks]
    return [k for k, _ in pairs], [v for _, v in pairs]


def context_caches(model: PixelTransformer, positions, values, mask, query_positions):
    """Encode S once: (enc_keys, enc_values [L, B, H, K, dh], dec_keys, dec_values [Ld, B, H, K, dh], and the law at
    query_positions given S: logits, offsets, log σ). What context.onnx computes."""
    enc = model.encoder
    x = enc.tokens(positions, values)
    bias = key_bias(mask, x.dtype)
    ks, vs = [], []
    for blk in enc.blocks:
        x, k, v = _block_pass(blk, x, None, None, bias)
        ks.append(k)
        vs.append(v)
    dk, dv = _memory_caches(model, enc.ln(x))
    out = _decode(model, dk, dv, bias, query_positions)
    return (torch.stack(ks), torch.stack(vs), torch.stack(dk), torch.stack(dv), *out)


def step_bias(cache_mask: torch.Tensor, n: int, dtype: torch.dtype = torch.float32):
    """(encoder bias [B, 1, n, T+n]: new token j reads the real cached tokens and new tokens i ≤ j; decoder bias
    [B, 1, 1, T+n]: queries read every real token)."""
    b = cache_mask.shape[0]
    new = torch.ones(b, n, dtype=torch.bool, device=cache_mask.device)
    keys = torch.cat([cache_mask, new], 1)
    causal = torch.ones(n, n, dtype=torch.bool, device=cache_mask.device).tril()
    enc = torch.cat([cache_mask[:, None, :].expand(b, n, -1), causal.expand(b, n, n)], -1)
    return allowed_bias(enc, dtype)[:, None], key_bias(keys, dtype)


def cached_step(model: PixelTransformer, token_positions, token_values, enc_keys, enc_values, dec_keys, dec_values,
                cache_mask, query_positions):
    """n new buffer tokens [B, n, ·] over the caches (T tokens, cache_mask [B, T]): (their enc keys, enc values
    [L, B, H, n, dh], dec keys, dec values [Ld, B, H, n, dh], and the law at query_positions given the context,
    the cached buffer and the new tokens). What step.onnx computes."""
    enc = model.encoder
    x = enc.tokens(token_positions, token_values)
    enc_bias, dec_bias = step_bias(cache_mask, x.shape[1], x.dtype)
    ks, vs = [], []
    for i, blk in enumerate(enc.blocks):
        x, k, v = _block_pass(blk, x, enc_keys[i], enc_values[i], enc_bias)
        ks.append(k)
        vs.append(v)
    nk, nv = _memory_caches(model, enc.ln(x))
    dk = [torch.cat([dec_keys[i], k], 2) for i, k in enumerate(nk)]
    dv = [torch.cat([dec_values[i], v], 2) for i, v in enumerate(nv)]
    out = _decode(model, dk, dv, dec_bias, query_positions)
    return (torch.stack(ks), torch.stack(vs), torch.stack(nk), torch.stack(nv), *out)
