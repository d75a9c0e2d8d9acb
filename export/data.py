"""Training data: readers for standard image formats and the self-supervised (S, Q) sampler.

Readers return float32 arrays [N, H, W, C] in [0, 1]. The sampler draws sample and query
positions in [-1, 1]^2 (x = column, y = row, align_corners=False) and reads their values by
bilinear interpolation, so the model sees a continuous signal, as in paper §4.1.
`python -m export.data emoji --out DIR` builds the RGB emoji set (export/emoji.py).
"""
from __future__ import annotations

import gzip
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pt_plugin.errors import InputError
from pt_plugin.images import IMAGE_SUFFIXES, read_image, resize_image
from pt_plugin.images import grid_positions as pixel_centers  # noqa: F401 - one definition of the pixel grid

from .errors import DataError, UsageError, reports_errors  # DataError: raised here, imported from here by callers

FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) as used by MNIST and Fashion-MNIST."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path} could not be read as {'gzip' if opener is gzip.open else 'IDX'}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (expected magic 0x00 0x00 0x08 ndim)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    shape = struct.unpack(">" + "I" * ndim, raw[4:header])
    need = int(np.prod(shape))
    if len(raw) - header != need:
        raise DataError(f"{path} is truncated or padded: shape {shape} needs {need} data bytes, "
                        f"found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_idx_images(directory: str | Path, split: str = "train") -> np.ndarray:
    """Fashion-MNIST / MNIST style folder -> [N, 28, 28, 1] float32 in [0, 1]."""
    directory = Path(directory)
    images, _ = FASHION_FILES[split]
    candidates = [directory / images, directory / images[:-3]]
    for c in candidates:
        if c.is_file():
            arr = read_idx(c)
            if arr.ndim != 3:
                raise DataError(f"{c} holds an array of shape {arr.shape}; expected [N, H, W] images")
            return (arr.astype(np.float32) / 255.0)[..., None]
    expected = ", ".join(str(c) for c in candidates)
    hint = " (on Debian: apt-get install dataset-fashion-mnist)" if "fashion" in str(directory) else ""
    raise DataError(f"no {split} images in {directory}: expected one of {expected}{hint}")


def image_files(directory: str | Path) -> list[Path]:
    """The image files of a folder in the order load_image_folder reads them (sorted by name)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"image folder not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files


def load_image_folder(directory: str | Path, channels: int = 3, size: tuple[int, int] | None = None) -> np.ndarray:
    """Every image in a folder -> [N, H, W, C]; RGBA is composited on white; sizes must agree unless size= is given."""
    files = image_files(directory)
    out = []
    for p in files:
        try:
            a = read_image(p, channels)  # the runtime's reader: RGBA composited on white
        except InputError as e:
            raise DataError(str(e)) from None
        if size is not None:
            a = resize_image(a, *size)
        out.append(a)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise DataError(f"images in {directory} differ in size {sorted(shapes)}; pass a size to resize them")
    return np.stack(out)


def load_cifar10(directory: str | Path, split: str = "train") -> np.ndarray:
    """CIFAR-10 python batches (data_batch_1..5 / test_batch) -> [N, 32, 32, 3]."""
    directory = Path(directory)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 folder {directory} lacks {missing}; expected the python-version batches")
    out = []
    for n in names:
        try:
            with open(directory / n, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            out.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        except (pickle.UnpicklingError, KeyError, EOFError, ValueError) as e:
            raise DataError(f"{directory / n} is not a CIFAR-10 python batch: {e}") from None
    return np.concatenate(out).transpose(0, 2, 3, 1).astype(np.float32) / 255.0


def load_dataset(spec: str, data_dir: str, split: str = "train") -> np.ndarray:
    """Dispatch on a data spec: fashion-mnist | idx:DIR | folder:DIR | cifar10:DIR."""
    kind, _, where = spec.partition(":")
    if kind in ("fashion-mnist", "idx"):
        return load_idx_images(where or data_dir, split)
    if kind == "folder":
        return load_image_folder(where or data_dir)
    if kind == "cifar10":
        return load_cifar10(where or data_dir, split)
    raise DataError(f"unknown data spec {spec!r}; expected fashion-mnist, idx:DIR, folder:DIR or cifar10:DIR")


def bilinear(images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Values [N, P, C] of images [N, H, W, C] at positions [N, P, 2] (align_corners=False, border)."""
    grid = positions.unsqueeze(1)  # [N, 1, P, 2]
    out = F.grid_sample(images.permute(0, 3, 1, 2), grid, mode="bilinear", align_corners=False,
                        padding_mode="border")
    return out[:, :, 0, :].transpose(1, 2)


def random_positions(n: int, p: int, h: int, w: int, snap_fraction: float, g: torch.Generator) -> torch.Tensor:
    """[n, p, 2] positions: uniform in [-1, 1]^2, a share of them snapped to pixel centres."""
    pos = torch.rand(n, p, 2, generator=g) * 2 - 1
    if snap_fraction > 0:
        size = torch.tensor([w, h], dtype=torch.float32)
        snapped = (torch.floor((pos + 1) / 2 * size).clamp(max=size - 1) + 0.5) / size * 2 - 1
        snap = torch.rand(n, p, 1, generator=g) < snap_fraction
        pos = torch.where(snap, snapped, pos)
    return pos


def log_uniform_int(lo: int, hi: int, g: torch.Generator) -> int:
    u = torch.rand((), generator=g).item()
    return int(round(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))))


def positions_near(samples: np.ndarray, m: int, std, rng: np.random.Generator) -> np.ndarray:
    """m positions [..., m, P] next to random samples of [..., k, P]: a sample's position plus N(0, std²) per
    axis, clipped to [-1, 1]. Continuous training queries rarely meet a sample; these make the model learn to
    read nearby values (shapes, moving-fashion: NEIGHBOUR_SHARE of their queries)."""
    pick = rng.integers(samples.shape[-2], size=samples.shape[:-2] + (m,))
    chosen = np.take_along_axis(samples, pick[..., None], axis=-2)
    return np.clip(chosen + rng.normal(0, std, chosen.shape), -1, 1)


class SetSampler:
    """Draws training batches (S positions, S values, S mask, Q positions, Q values) from images."""

    def __init__(self, images: np.ndarray, min_samples: int, max_samples: int, num_queries: int,
                 batch_size: int, snap_fraction: float = 0.5, seed: int = 0, max_set_tokens: int = 0):
        if images.ndim != 4:
            raise DataError(f"images must be [N, H, W, C], got shape {images.shape}")
        if not 1 <= min_samples <= max_samples:
            raise DataError(f"need 1 <= min_samples <= max_samples, got {min_samples}, {max_samples}")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.kmin, self.kmax, self.nq, self.bs = min_samples, max_samples, num_queries, batch_size
        self.snap = snap_fraction
        self.max_tokens = max_set_tokens  # caps batch × |S| so large sets do not dominate the step time
        self.g = torch.Generator().manual_seed(seed)

    def batch(self, variable_sizes: bool = False):
        """One batch; all sets share one |S| unless variable_sizes (then padded, with a mask)."""
        n, h, w, _ = self.images.shape
        k = log_uniform_int(self.kmin, self.kmax, self.g)
        bs = min(self.bs, max(1, self.max_tokens // k)) if self.max_tokens else self.bs
        imgs = self.images[torch.randint(n, (bs,), generator=self.g)]
        spos = random_positions(bs, k, h, w, self.snap, self.g)
        qpos = random_positions(bs, self.nq, h, w, self.snap, self.g)
        sval, qval = bilinear(imgs, spos), bilinear(imgs, qpos)
        mask = torch.ones(bs, k, dtype=torch.bool)
        if variable_sizes:
            sizes = torch.randint(1, k + 1, (bs,), generator=self.g)
            mask = torch.arange(k)[None, :] < sizes[:, None]
        return spos, sval, mask, qpos, qval


@reports_errors
def main(argv: list[str] | None = None) -> int:
    """`python -m export.data RECIPE ...`: build a data set on disk (recipes: emoji)."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("emoji",):
        raise UsageError(f"no such recipe {argv[0] if argv else ''!r}; "
                         "expected: python -m export.data emoji --out DIR [--size 32] [--packages DIR]")
    from .emoji import main as emoji_main  # imported when asked for: it needs npm

    return emoji_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
