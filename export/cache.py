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
  context.onnx gives the caches as [layers, B, heads, T, dh]; step.onnx takes one [B, heads, T, dh] tensor per
  layer (a sampler keeps [layers, ...] arrays and feeds each layer's slice without copying) and never joins
  them to the new tokens' keys and values: each attention takes its softmax over both score blocks.
"""
from __future__ import annotations

import math

import torch

from export.model import Attention, PixelTransformer, allowed_bias, key_bias

# --------------------------------------------------------------------------- sampling with caches

def _block_pass(blk, x: torch.Tensor, bias: torch.Tensor):
    """One encoder block over the context tokens x [B, K, D]: (x after the block, their keys, their values
    [B, H, K, dh])."""
    att: Attention = blk.att
    h = blk.ln1(x)
    k, v = att.keys_values(h)
    x = x + att.attend(h, k, v, bias)
    return x + blk.ff(blk.ln2(x)), k, v


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
        x, k, v = _block_pass(blk, x, bias)
        ks.append(k)
        vs.append(v)
    dk, dv = _memory_caches(model, enc.ln(x))
    out = _decode(model, dk, dv, bias, query_positions)
    return (torch.stack(ks), torch.stack(vs), torch.stack(dk), torch.stack(dv), *out)


def step_bias(cache_mask: torch.Tensor, n: int, dtype: torch.dtype = torch.float32):
    """(cache bias [B, 1, 1, T]: the real cached tokens; new-token bias [1, 1, n, n]: new token j reads new tokens
    i ≤ j). Queries read every real cached token and every new one."""
    causal = torch.ones(n, n, dtype=torch.bool, device=cache_mask.device).tril()
    return key_bias(cache_mask, dtype), allowed_bias(causal, dtype)[None, None]


def _split_attend(att: Attention, x: torch.Tensor, k_cache, v_cache, k_new, v_new, cache_bias, new_bias):
    """att.attend over the cached keys and values and the new ones without joining them (no copy of the caches):
    one softmax over both score blocks, then each block's share of the values."""
    b, lq, _ = x.shape
    t = k_cache.shape[2]
    q = att.heads(att.q(x)) * (1.0 / math.sqrt(att.dh))
    scores = torch.cat([q @ k_cache.transpose(-1, -2) + cache_bias, q @ k_new.transpose(-1, -2) + new_bias], -1)
    w = torch.softmax(scores, dim=-1)
    out = w[..., :t] @ v_cache + w[..., t:] @ v_new
    return att.proj(out.transpose(1, 2).reshape(b, lq, att.h * att.dh))


def cached_step(model: PixelTransformer, token_positions, token_values, caches: tuple, cache_mask, query_positions):
    """n new buffer tokens [B, n, ·] over the caches of T tokens (cache_mask [B, T]). caches: one [B, H, T, dh]
    tensor per layer, in the order enc keys (L), enc values (L), dec keys (Ld), dec values (Ld). Returns (the new
    tokens' enc keys, enc values [L, B, H, n, dh], dec keys, dec values [Ld, B, H, n, dh], and the law at
    query_positions given the context, the cached buffer and the new tokens). What step.onnx computes."""
    enc, dec = model.encoder, model.decoder
    nl, nd = len(enc.blocks), len(dec.blocks)
    ek, ev, dk, dv = caches[:nl], caches[nl:2 * nl], caches[2 * nl:2 * nl + nd], caches[2 * nl + nd:]
    x = enc.tokens(token_positions, token_values)
    cache_bias, new_bias = step_bias(cache_mask, x.shape[1], x.dtype)
    ks, vs = [], []
    for i, blk in enumerate(enc.blocks):
        h = blk.ln1(x)
        k, v = blk.att.keys_values(h)
        x = x + _split_attend(blk.att, h, ek[i], ev[i], k, v, cache_bias, new_bias)
        x = x + blk.ff(blk.ln2(x))
        ks.append(k)
        vs.append(v)
    nk, nv = _memory_caches(model, enc.ln(x))
    b, nq, _ = query_positions.shape
    q = dec.tokens(query_positions)
    for i, blk in enumerate(dec.blocks):
        q = q + _split_attend(blk.att, blk.ln1(q), dk[i], dv[i], nk[i], nv[i], cache_bias, 0.0)
        q = q + blk.ff(blk.ln2(q))
    return (torch.stack(ks), torch.stack(vs), torch.stack(nk), torch.stack(nv), *dec.outputs(q, b, nq))
