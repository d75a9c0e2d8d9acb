"""Model and training configuration: plain dataclasses that round-trip through JSON.

One config describes any signal (pos_dim, val_dim, bins), so the same code serves
images, 1-D functions, 3-D fields and videos.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.datasets.base import DEFAULT_DATA, FASHION_DIR
from export.errors import ConfigError  # raised here, imported from here by callers


@dataclass
class ModelConfig:
    pos_dim: int = 2
    val_dim: int = 1
    d_model: int = 128            # half value/query embedding, half Fourier position features
    n_heads: int = 4
    enc_layers: int = 4
    dec_layers: int = 4
    ffn: int = 256
    dropout: float = 0.0
    fourier_scale: float = 2.0    # std of the Gaussian frequency matrix (positions in [-1, 1])
    fourier_axis_scales: list[float] | None = None  # per position axis, times fourier_scale: a smaller one
    #   widens the attention kernel along that axis (video: t, whose cells are 4x wider than x and y's)
    num_bins: int = 64            # uniform bins over value_range when bin_centers is None
    bin_centers: list[list[float]] | None = None  # explicit [bins, val_dim] centres (RGB palette)
    value_range: tuple[float, float] = (0.0, 1.0)
    alpha: float = 0.1            # weight of the Gaussian term in the training loss (paper appendix)
    sigma_min: float = 1e-3       # floor of the per-bin standard deviation, in value units
    max_offset_bins: float = 2.0  # |offset| is kept below this many bin widths
    fourier_seed: int = 0         # seed of the fixed Fourier matrix
    init_std: float = 0.02        # std of the Linear weights at init; 0 = 1/sqrt(fan_in)
    locality_init: float = 0.0    # > 0: start every attention layer local (module docstring of export.model)
    normalize_values: bool = False  # map value_range to [-1, 1] before the value embedding and start that
    #   embedding at unit scale (std 1, not 0.02): otherwise the values enter the encoder ~35x weaker than the
    #   Fourier features and a model can train for thousands of steps on positions alone, ignoring S

    def validate(self) -> None:
        if self.pos_dim < 1 or self.val_dim < 1:
            raise ConfigError(f"pos_dim and val_dim must be >= 1, got {self.pos_dim}, {self.val_dim}")
        if self.d_model % 2 or (self.d_model // 2) % 2:
            raise ConfigError(f"d_model must be divisible by 4 (half of it is sin/cos features), got {self.d_model}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        axes = self.fourier_axis_scales
        if axes is not None and (len(axes) != self.pos_dim or any(not a > 0 for a in axes)):
            raise ConfigError(f"fourier_axis_scales must be {self.pos_dim} positive numbers (one per position "
                              f"axis), got {axes}")
        lo, hi = self.value_range
        if not hi > lo:
            raise ConfigError(f"value_range must be (low, high) with high > low, got {self.value_range}")
        if self.bin_centers is not None:
            rows = self.bin_centers
            if not rows or any(len(r) != self.val_dim for r in rows):
                raise ConfigError(
                    f"bin_centers must be a [bins, val_dim={self.val_dim}] list; got rows of lengths "
                    f"{sorted({len(r) for r in rows})}")
        elif self.val_dim != 1 and self.num_bins > 1:
            raise ConfigError(
                f"uniform bins (num_bins={self.num_bins}) only fit val_dim 1; for val_dim {self.val_dim} "
                "give bin_centers (e.g. a palette fitted by `python -m export.train --palette K`) or num_bins 1")
        elif self.num_bins < 1:
            raise ConfigError(f"num_bins must be >= 1, got {self.num_bins}")

    @property
    def bins(self) -> int:
        return len(self.bin_centers) if self.bin_centers is not None else self.num_bins


@dataclass
class TrainConfig:
    data: str = DEFAULT_DATA      # a data spec of export.datasets: NAME or NAME:DIR (python -m export.train --help)
    data_dir: str = FASHION_DIR   # the IDX folder of the data sets read from Fashion-MNIST
    limit: int = 0                # use only the first N training images (0 = all)
    val_images: int = 500         # held out from the end of the training split
    batch_size: int = 16
    min_samples: int = 4          # |S| is log-uniform in [min_samples, max_samples]
    max_samples: int = 512
    num_queries: int = 256
    snap_fraction: float = 0.5    # share of positions put exactly on pixel centres
    max_set_tokens: int = 0       # cap on batch × |S| per step (0 = none): large sets get smaller batches
    palette: int = 0              # fit this many colour centres (k-means) to the training pixels as bin_centers
    steps: int = 20000
    lr: float = 5e-4
    warmup: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    val_every: int = 1000
    ckpt_every: int = 500
    out: str = f"runs/{DEFAULT_DATA}"
    threads: int = 0              # torch threads (0 = torch default)
    max_minutes: float = 0.0      # stop (with a checkpoint) after this wall time; 0 = no limit
    precision: str = "auto"       # auto | fp32 | bf16 (export.precision): auto = bf16 where the device has it natively
    attention: str = "auto"       # auto | folded | fused (F.scaled_dot_product_attention) in training; exports are
    #   always folded. auto: fused on CUDA; on a CPU from the key count where it pays (precision.FUSE_FROM_CPU)
    compile: bool = False         # torch.compile the model (dynamic shapes; a compile of ~1 minute first)
    buffer_max: int = 0           # > 0: train the causal buffer (export.cache) too: each step G log-uniform in
    #   1..buffer_max of the queries become a buffer in random order, each predicted from S and the buffer before it
    buffer_weight: float = 0.5    # the buffer loss's share of the loss (the rest: the queries given S alone)

    def validate(self) -> None:
        if self.buffer_max < 0 or (self.buffer_max and self.buffer_max >= self.num_queries):
            raise ConfigError(f"buffer_max must be 0 (off) or 1..num_queries - 1 = {self.num_queries - 1} (the buffer "
                              f"is taken from the queries), got {self.buffer_max}")
        if not 0.0 <= self.buffer_weight <= 1.0:
            raise ConfigError(f"buffer_weight must be in [0, 1], got {self.buffer_weight}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        known_m = {f.name for f in dataclasses.fields(ModelConfig)}
        known_t = {f.name for f in dataclasses.fields(TrainConfig)}
        m, t = d.get("model", {}), d.get("train", {})
        bad = sorted(set(m) - known_m) + sorted(set(t) - known_t)
        if bad:
            raise ConfigError(f"unknown config keys: {bad}")
        mc = ModelConfig(**m)
        mc.value_range = tuple(mc.value_range)  # type: ignore[assignment]
        return cls(model=mc, train=TrainConfig(**t))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
