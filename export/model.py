"""PixelTransformer in one readable file (Tulsiani & Gupta, ICML 2021, §4.1 and appendix).

f_θ(x, {(x_k, v_k)}) -> a binned Gaussian mixture over the value at x:
    q = softmax(logits), component b has mean c_b + μ_b and standard deviation σ_b.

The network is split the way it is exported: an Encoder over the sample set (self-attention
with a key padding mask) and a QueryDecoder whose queries cross-attend to the encoded samples
but never to each other, so every query is independent given S.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from export.config import ModelConfig

MASK_FILL = -3.0e4  # finite "minus infinity": keeps fp16 exports and fully masked rows free of NaN


def key_bias(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention bias [B, 1, 1, K] from a key mask [B, K] (True = a real sample).

    0 for real samples, MASK_FILL for padding; built once per forward and shared by every layer
    and head (Attention folds it into the score product, so no graph op touches the full-size
    scores for the mask: issue 18). exp(MASK_FILL) underflows to exactly 0 next to any real score,
    so padding changes nothing; a row with no real sample gets finite weights (no NaN).
    """
    zero, fill = torch.zeros((), dtype=dtype), torch.full((), MASK_FILL, dtype=dtype)
    return torch.where(mask, zero, fill)[:, None, None, :]  # a Where over [B, K] (a Cast trips the fp16 converter)


def allowed_bias(allow: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where attention is allowed, MASK_FILL where not."""
    return torch.where(allow, torch.zeros((), dtype=dtype), torch.full((), MASK_FILL, dtype=dtype))


def buffer_biases(ctx_mask: torch.Tensor, g: int, nq: int, dtype: torch.dtype = torch.float32):
    """(encoder bias [B, 1, K+G, K+G], decoder bias [B, 1, G+Q, K+G]) for context S (mask [B, K]), a buffer of
    G tokens in order, and Q ordinary queries. Encoder: S attends to S; buffer token j to S and buffer
    tokens i ≤ j. Decoder: the prediction at buffer position j reads S and buffer tokens i < j; ordinary
    queries read S only (today's loss)."""
    b, k = ctx_mask.shape
    dev = ctx_mask.device
    ctx = ctx_mask[:, None, :]                                          # [B, 1, K]
    no_buf = torch.zeros(b, 1, g, dtype=torch.bool, device=dev)
    causal = torch.ones(g, g, dtype=torch.bool, device=dev).tril()      # i ≤ j
    strict = torch.ones(g, g, dtype=torch.bool, device=dev).tril(-1)    # i < j
    enc = torch.cat([torch.cat([ctx.expand(b, k, k), no_buf.expand(b, k, g)], -1),
                     torch.cat([ctx.expand(b, g, k), causal.expand(b, g, g)], -1)], -2)
    dec = torch.cat([torch.cat([ctx.expand(b, g, k), strict.expand(b, g, g)], -1),
                     torch.cat([ctx.expand(b, nq, k), no_buf.expand(b, nq, g)], -1)], -2)
    return allowed_bias(enc, dtype)[:, None], allowed_bias(dec, dtype)[:, None]


def full_precision(x: torch.Tensor):
    """A float32 island inside bf16 autocast (export.precision): Fourier phases 2π·x·B reach ~30 and would
    be known to ±0.1 rad in bf16; values and component means would be blurred by about the σ floor. A no-op
    (and no graph op) outside autocast, so exports and fp32 training trace exactly as before."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def bin_centers(cfg: ModelConfig) -> torch.Tensor:
    """[bins, val_dim] centres c_b: uniform over value_range, or the configured palette."""
    if cfg.bin_centers is not None:
        return torch.tensor(cfg.bin_centers, dtype=torch.float32)
    lo, hi = cfg.value_range
    if cfg.num_bins == 1:
        return torch.full((1, cfg.val_dim), (lo + hi) / 2)
    return torch.linspace(lo, hi, cfg.num_bins).unsqueeze(1)


def bin_width(cfg: ModelConfig) -> float:
    """Typical spacing of the bins, the unit in which offsets are bounded: the step of uniform bins, or
    the median nearest-neighbour distance of explicit centres (a 512-colour palette is ~0.08 apart in
    RGB, not (hi - lo) / 511, which would pin every offset within 0.004 of its centre)."""
    lo, hi = cfg.value_range
    if cfg.bin_centers is not None and len(cfg.bin_centers) > 1:
        c = torch.tensor(cfg.bin_centers, dtype=torch.float64)
        d = torch.cdist(c, c)
        d.fill_diagonal_(math.inf)
        return float(d.min(1).values.median())
    return (hi - lo) / max(cfg.bins - 1, 1)


class FourierFeatures(nn.Module):
    """Random Fourier position features [sin, cos](2π x B), B fixed ~ N(0, scale²) (Tancik et al.), its
    row for axis i times axis_scales[i] when given (an anisotropic kernel)."""

    def __init__(self, pos_dim: int, num_features: int, scale: float, seed: int,
                 axis_scales: list[float] | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        b = torch.randn(pos_dim, num_features, generator=g) * scale
        if axis_scales is not None:
            b = b * torch.tensor(axis_scales, dtype=b.dtype)[:, None]
        self.register_buffer("B", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            proj = 2 * math.pi * (x.float() @ self.B)
            return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class Attention(nn.Module):
    """Multi-head attention with an additive key bias [B, 1, 1, K] (key_bias: 0 real, MASK_FILL padding).

    Laid out for the exported graphs (issue 18), with the same weights and state_dict as the plain
    formulation:
    - the 1/√dh scale and a constant-1 feature per head are folded into the query projection, so q
      comes out as [q / √dh, 1] with no Mul or Concat;
    - the key bias rides along in the score product as that extra feature: [q / √dh, 1] · [k, bias] =
      q·k / √dh + bias, so no full-size Add or Where over [B, heads, queries, K] is left in any layer;
    - keys come out of the projection already transposed ([B, heads, dh, K]) for the score MatMul.
    At export (frozen_for_export) the folded query weights are fixed tensors, i.e. plain initializers.
    """

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)
        self.frozen: tuple[torch.Tensor, ...] | None = None  # set by frozen_for_export; not in the state_dict
        self.fuse_from: int | None = None  # fused_forward from this many keys on (training only:
        #   PixelTransformer.fuse_attention); None: never. Exports always take the folded path
        self.attention_op = False  # set by frozen_for_export(attention_op=True): the folded path as one
        #   scaled_dot_product_attention, which the exporter writes as one ONNX Attention node (opset 23)

    def projections(self) -> tuple[torch.Tensor, ...]:
        """(wq, bq): weight [H·(dh+1), d] and bias giving [q / √dh, 1] per head in one projection."""
        if self.frozen is not None:
            return self.frozen
        h, dh = self.h, self.dh
        scale = 1.0 / math.sqrt(dh)
        wq = (self.q.weight * scale).view(h, dh, -1)
        bq = (self.q.bias * scale).view(h, dh)
        wq = torch.cat([wq, wq.new_zeros(h, 1, wq.shape[-1])], dim=1).reshape(h * (dh + 1), -1)
        bq = torch.cat([bq, bq.new_ones(h, 1)], dim=1).reshape(-1)
        return wq, bq

    def scores_and_values(self, x: torch.Tensor, mem: torch.Tensor, bias: torch.Tensor):
        """Pre-softmax scores [B, H, Lq, K] (key bias included) and values [B, H, K, dh]."""
        b, lq, _ = x.shape
        h, dh, lk = self.h, self.dh, mem.shape[1]
        q1 = F.linear(x, *self.projections()).view(b, lq, h, dh + 1).transpose(1, 2)  # [B,H,Lq,dh+1]
        kv = self.kv(mem).view(b, lk, 2, h, dh)
        k_t, v = kv[:, :, 0].permute(0, 2, 3, 1), kv[:, :, 1].transpose(1, 2)  # [B,H,dh,K], [B,H,K,dh]
        k_t1 = torch.cat([k_t, bias.expand(b, h, 1, lk)], dim=-2)
        return q1 @ k_t1, v

    def forward(self, x: torch.Tensor, mem: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if bias.shape[-2] != 1:  # a bias per query and key (the causal buffer's training masks)
            return self.biased_forward(x, mem, bias)
        if self.fuse_from is not None and self.frozen is None and mem.shape[1] >= self.fuse_from:
            return self.fused_forward(x, mem, bias)
        if self.attention_op:
            return self.op_attend(x, *self.keys_values(mem), bias)
        scores, v = self.scores_and_values(x, mem, bias)
        att = self.drop(torch.softmax(scores, dim=-1))
        b, lq, _ = x.shape
        out = (att @ v).transpose(1, 2).reshape(b, lq, self.h * self.dh)
        return self.proj(out)

    def fused_forward(self, x: torch.Tensor, mem: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The same attention through F.scaled_dot_product_attention (training only: its fused CPU kernel
        keeps scores and softmax in float32 under bf16 autocast and never stores the [B, H, Lq, K] scores)."""
        b, lq, _ = x.shape
        h, dh, lk = self.h, self.dh, mem.shape[1]
        q = self.q(x).view(b, lq, h, dh).transpose(1, 2)
        kv = self.kv(mem).view(b, lk, 2, h, dh)
        k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                             dropout_p=self.drop.p if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, lq, h * dh))


    def heads(self, t: torch.Tensor) -> torch.Tensor:
        """[B, L, H·dh] -> [B, H, L, dh]."""
        b, n, _ = t.shape
        return t.view(b, n, self.h, self.dh).transpose(1, 2)

    def keys_values(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, H, K, dh] of memory tokens: what the causal buffer caches."""
        k, v = self.kv(mem).chunk(2, dim=-1)
        return self.heads(k), self.heads(v)

    def op_attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The folded formulation over keys and values [B, H, K, dh] and a key bias [B, 1, 1, K] as one
        scaled_dot_product_attention (export only, opset 23: one standard Attention node, no [B, H, Lq, K] scores
        in the graph): q = [q / √dh, 1], k = [k, bias], scale 1, so q·k = q·k / √dh + bias exactly as in
        scores_and_values. The bias rides in the keys because onnxruntime's Attention kernel wants a mask of
        [.., Lq, K], which would be a full-size tensor."""
        b, lq, _ = x.shape
        h, dh, lk = self.h, self.dh, k.shape[2]
        q1 = F.linear(x, *self.projections()).view(b, lq, h, dh + 1).transpose(1, 2)  # [B,H,Lq,dh+1]
        k1 = torch.cat([k, bias.transpose(-1, -2).expand(b, h, lk, 1)], dim=-1)  # [B,H,K,dh+1]
        out = F.scaled_dot_product_attention(q1, k1, v, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(b, lq, h * dh))

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """The plain formulation over given keys and values [B, H, K, dh], with a bias broadcast to
        [B, H, Lq, K]: softmax(q·kᵀ/√dh + bias)·v, projected."""
        if self.attention_op and bias.shape[-2] == 1:
            return self.op_attend(x, k, v, bias)
        b, lq, _ = x.shape
        q = self.heads(self.q(x)) * (1.0 / math.sqrt(self.dh))
        att = self.drop(torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1))
        return self.proj((att @ v).transpose(1, 2).reshape(b, lq, self.h * self.dh))

    def biased_forward(self, x: torch.Tensor, mem: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Attention with a bias per query and key [B, 1, Lq, K] (training the causal buffer, export.cache)."""
        if self.fuse_from is not None and self.frozen is None:
            return self.fused_forward(x, mem, bias)
        return self.attend(x, *self.keys_values(mem), bias)


@contextmanager
def frozen_for_export(model: nn.Module, attention_op: bool = False) -> Iterator[nn.Module]:
    """Within the block every Attention uses its folded query projection as fixed tensors (export only:
    training must see the live weights); with attention_op, each attention over a key bias goes through
    Attention.op_attend (one ONNX Attention node at opset 23) instead of MatMul, Softmax, MatMul."""
    atts = [m for m in model.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        for att in atts:
            att.frozen = tuple(t.clone() for t in att.projections())
            att.attention_op = attention_op
    try:
        yield model
    finally:
        for att in atts:
            att.frozen = None
            att.attention_op = False


class FeedForward(nn.Sequential):
    def __init__(self, d: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-LN self-attention block over the sample set."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.att = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ff = FeedForward(cfg.d_model, cfg.ffn, cfg.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.att(h, h, bias)
        return x + self.ff(self.ln2(x))


class DecoderBlock(nn.Module):
    """Pre-LN cross-attention block: queries read the samples, never each other."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.att = Attention(cfg.d_model, cfg.n_heads, cfg.dropout)
        self.ff = FeedForward(cfg.d_model, cfg.ffn, cfg.dropout)

    def forward(self, q: torch.Tensor, mem: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q = q + self.att(self.ln1(q), mem, bias)
        return q + self.ff(self.ln2(q))


class Encoder(nn.Module):
    """(positions [B,K,P], values [B,K,V], mask [B,K]) -> memory [B,K,D]."""

    def __init__(self, cfg: ModelConfig, posenc: FourierFeatures):
        super().__init__()
        self.posenc = posenc
        self.value_embed = nn.Linear(cfg.val_dim, cfg.d_model // 2)
        lo, hi = cfg.value_range
        self.value_affine = ((lo + hi) / 2, 2 / (hi - lo)) if cfg.normalize_values else None
        self.blocks = nn.ModuleList(EncoderBlock(cfg) for _ in range(cfg.enc_layers))
        self.ln = nn.LayerNorm(cfg.d_model)

    def tokens(self, positions: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The first block's input [B, K, D]: each sample's value embedding beside its Fourier features."""
        if self.value_affine is not None:  # value_range -> [-1, 1]
            values = (values - self.value_affine[0]) * self.value_affine[1]
        with full_precision(values):
            return torch.cat([self.value_embed(values.float()), self.posenc(positions)], dim=-1)

    def forward(self, positions: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """bias: [B, 1, K, K] per query and key instead of the key mask's (the causal buffer, export.cache)."""
        x = self.tokens(positions, values)
        bias = key_bias(mask, x.dtype) if bias is None else bias
        for blk in self.blocks:
            x = blk(x, bias)
        return self.ln(x)


class QueryDecoder(nn.Module):
    """(memory, mask, query positions [B,Q,P]) -> logits [B,Q,NB], offsets [B,Q,NB,V], log_sigma [B,Q,NB]."""

    def __init__(self, cfg: ModelConfig, posenc: FourierFeatures):
        super().__init__()
        self.cfg = cfg
        self.posenc = posenc
        self.query_token = nn.Parameter(torch.zeros(cfg.d_model // 2))
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.dec_layers))
        self.ln = nn.LayerNorm(cfg.d_model)
        nb, v = cfg.bins, cfg.val_dim
        self.head = nn.Linear(cfg.d_model, nb * (v + 2))
        self.max_offset = cfg.max_offset_bins * bin_width(cfg)
        lo, hi = cfg.value_range
        self.sigma_min = cfg.sigma_min * (hi - lo)
        self.sigma_max = hi - lo

    def tokens(self, query_positions: torch.Tensor) -> torch.Tensor:
        """The first block's input [B, Q, D]: the learnt query token beside each position's Fourier features."""
        b, nq, _ = query_positions.shape
        return torch.cat([self.query_token.expand(b, nq, -1), self.posenc(query_positions)], dim=-1)

    def forward(self, memory: torch.Tensor, mask: torch.Tensor, query_positions: torch.Tensor,
                bias: torch.Tensor | None = None):
        """bias: [B, 1, Q, K] per query and key instead of the key mask's (the causal buffer, export.cache)."""
        b, nq, _ = query_positions.shape
        q = self.tokens(query_positions)
        bias = key_bias(mask, q.dtype) if bias is None else bias
        for blk in self.blocks:
            q = blk(q, memory, bias)
        return self.outputs(q, b, nq)

    def outputs(self, q: torch.Tensor, b: int, nq: int):
        """(logits, offsets, log σ) from the last block's query tokens [B, Q, D]."""
        with full_precision(q):
            return self.head_outputs(self.head(self.ln(q.float())), b, nq)

    def head_outputs(self, out: torch.Tensor, b: int, nq: int):
        """(logits, offsets, log σ) from the head's [B, Q, NB·(V + 2)] output, in float32 (full_precision)."""
        nb, v = self.cfg.bins, self.cfg.val_dim
        logits = out[..., :nb]
        offsets = self.max_offset * torch.tanh(out[..., nb:nb + nb * v]).reshape(b, nq, nb, v)
        # σ in [sigma_min, sigma_max]: a floor keeps the density finite, a ceiling keeps it meaningful
        # (1 + e^-z)^-1 rather than sigmoid: onnxruntime's fast Sigmoid has ~1e-7 absolute error, which
        # log() turns into 1e-4 near sigma_min; exp keeps the relative error small (export parity)
        gate = torch.reciprocal(1.0 + torch.exp(3.0 - out[..., nb + nb * v:]))
        sigma = self.sigma_min + (self.sigma_max - self.sigma_min) * gate
        return logits, offsets, torch.log(sigma)


class PixelTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        posenc = FourierFeatures(cfg.pos_dim, cfg.d_model // 4, cfg.fourier_scale, cfg.fourier_seed,
                                 cfg.fourier_axis_scales)
        self.encoder = Encoder(cfg, posenc)
        self.decoder = QueryDecoder(cfg, posenc)
        self.register_buffer("centers", bin_centers(cfg))
        self.apply(lambda m: self._init(m, cfg.init_std))
        if cfg.normalize_values:  # values in [-1, 1] embedded at the scale of the Fourier features, so that
            nn.init.normal_(self.encoder.value_embed.weight, std=1.0)  # attention can use them from step 0
        if cfg.locality_init:
            self.init_local_attention(cfg.locality_init)

    @torch.no_grad()
    def init_local_attention(self, alpha: float) -> None:
        """Add alpha to the query and key weights that copy a head's share of the Fourier features: each head
        then starts with scores alpha²·Σ_f cos(2π ω_f·(x − y)) (+ the random part), a kernel peaked where
        query and key positions agree. Without it, attention starts uniform and a model can spend thousands
        of steps predicting from positions alone before it learns to look at nearby samples."""
        d, nf = self.cfg.d_model, self.cfg.d_model // 4  # Fourier features: sin at d/2 + f, cos at d/2 + nf + f
        for blk in [*self.encoder.blocks, *self.decoder.blocks]:
            att = blk.att
            per = att.dh // 2  # frequencies per head (a sin and a cos dimension each)
            for head in range(att.h):
                freqs = (torch.arange(per) + head * per) % nf
                rows = head * att.dh + torch.arange(att.dh)
                cols = torch.cat([d // 2 + freqs, d // 2 + nf + freqs])
                att.q.weight[rows, cols] += alpha
                att.kv.weight[rows, cols] += alpha  # the first d rows of kv are the keys

    @staticmethod
    def _init(m: nn.Module, std: float = 0.02) -> None:
        """Linear weights ~ N(0, std²), or N(0, 1/fan_in) with std 0 (a unit-scale signal through each layer)."""
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std or m.in_features ** -0.5)
            nn.init.zeros_(m.bias)

    def fuse_attention(self, from_keys: int | None = 0) -> "PixelTransformer":
        """Train through F.scaled_dot_product_attention (Attention.fused_forward) wherever a layer attends to at
        least `from_keys` keys (0: always; None: never). Exports always use the folded formulation
        (frozen_for_export), which has the same weights and outputs."""
        for m in self.modules():
            if isinstance(m, Attention):
                m.fuse_from = from_keys
        return self

    def forward(self, sample_pos, sample_val, sample_mask, query_pos, buffer_pos=None, buffer_val=None):
        """The law at each query given S (a Mixture [B, Q]). With a buffer (buffer_pos/buffer_val [B, G, ·], a
        drawing order): (the law at each buffer position j given S and buffer tokens < j, the law at each
        query given S alone), teacher-forced in one pass (the causal buffer of export.cache)."""
        if buffer_pos is None:
            memory = self.encoder(sample_pos, sample_val, sample_mask)
            return Mixture(*self.decoder(memory, sample_mask, query_pos), self.centers)
        g = buffer_pos.shape[1]
        enc_bias, dec_bias = buffer_biases(sample_mask, g, query_pos.shape[1])
        mask = torch.cat([sample_mask, torch.ones_like(sample_mask[:, :1]).expand(-1, g)], 1)
        memory = self.encoder(torch.cat([sample_pos, buffer_pos], 1), torch.cat([sample_val, buffer_val], 1), mask,
                              enc_bias)
        out = self.decoder(memory, mask, torch.cat([buffer_pos, query_pos], 1), dec_bias)
        return (Mixture(*(t[:, :g] for t in out), self.centers), Mixture(*(t[:, g:] for t in out), self.centers))


class Mixture:
    """The binned value law of the paper for a batch of queries (torch; numpy twin in pt_plugin)."""

    def __init__(self, logits, offsets, log_sigma, centers):
        self.logits, self.offsets, self.log_sigma, self.centers = logits, offsets, log_sigma, centers

    @property
    def component_means(self) -> torch.Tensor:  # [..., NB, V]
        return self.centers + self.offsets

    def mean(self) -> torch.Tensor:
        """Eq. 2: Σ_b q_b (c_b + μ_b)."""
        q = torch.softmax(self.logits, -1)
        return (q.unsqueeze(-1) * self.component_means).sum(-2)

    def log_prob(self, v: torch.Tensor) -> torch.Tensor:
        """Natural-log mixture density of v [..., V], summed over val_dim."""
        vd = v.shape[-1]
        sigma = self.log_sigma.exp()
        r2 = ((v.unsqueeze(-2) - self.component_means) ** 2).sum(-1)
        comp = -0.5 * r2 / sigma**2 - vd * self.log_sigma - 0.5 * vd * math.log(2 * math.pi)
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + comp, -1)

    def nearest_bin(self, v: torch.Tensor) -> torch.Tensor:
        return torch.cdist(v.reshape(-1, v.shape[-1]), self.centers).argmin(-1).reshape(v.shape[:-1])

    def loss(self, v: torch.Tensor, alpha: float) -> torch.Tensor:
        """Appendix loss per query: −log q_b* + α·(V·log σ_b* + ‖v − c_b* − μ_b*‖² / (2σ_b*²)).

        b* is the bin nearest to v. The ½ makes σ the maximum-likelihood standard deviation;
        the formula as printed in the paper (no ½) would fit σ √2 too wide.
        """
        b = self.nearest_bin(v)
        logq = torch.log_softmax(self.logits, -1).gather(-1, b.unsqueeze(-1)).squeeze(-1)
        idx = b[..., None, None].expand(*b.shape, 1, v.shape[-1])
        mu = self.component_means.gather(-2, idx).squeeze(-2)
        ls = self.log_sigma.gather(-1, b.unsqueeze(-1)).squeeze(-1)
        gauss = v.shape[-1] * ls + 0.5 * ((v - mu) ** 2).sum(-1) / torch.exp(2 * ls)
        return -logq + alpha * gauss

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One draw per query: b ~ q, then c_b + μ_b + σ_b·ε (σ is a standard deviation)."""
        q = torch.softmax(self.logits, -1)
        flat = q.reshape(-1, q.shape[-1])
        b = torch.multinomial(flat, 1, generator=generator).reshape(q.shape[:-1])
        idx = b[..., None, None].expand(*b.shape, 1, self.offsets.shape[-1])
        mu = self.component_means.gather(-2, idx).squeeze(-2)
        sigma = self.log_sigma.exp().gather(-1, b.unsqueeze(-1))
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return mu + sigma * eps

    def discretized_log_prob(self, v: torch.Tensor, levels: int = 256, lo: float = 0.0, hi: float = 1.0):
        """log P(v's level) for values v [..., V] quantised to `levels` per channel on [lo, hi]; edge levels
        take the tails. Given a component the channels are independent (shared σ_b): their masses multiply."""
        h = (hi - lo) / (levels - 1) / 2
        sigma = self.log_sigma.exp().unsqueeze(-1)  # [..., NB, 1]
        m = self.component_means                    # [..., NB, V]
        vv = v.unsqueeze(-2)                        # [..., 1, V]
        upper = torch.where(vv >= hi - h / 2, torch.full_like(vv, math.inf), vv + h)
        lower = torch.where(vv <= lo + h / 2, torch.full_like(vv, -math.inf), vv - h)
        cdf = lambda x: 0.5 * (1 + torch.erf((x - m) / (sigma * math.sqrt(2))))  # noqa: E731
        mass = (cdf(upper) - cdf(lower)).clamp_min(1e-12)
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + mass.log().sum(-1), -1)
