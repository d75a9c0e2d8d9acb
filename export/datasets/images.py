"""Training data: readers for standard image formats and the self-supervised (S, Q) sampler.

Readers return float32 arrays [N, H, W, C] in [0, 1]. The sampler draws sample and query
positions in [-1, 1]^2 (x = column, y = row, align_corners=False) and reads their values by
bilinear interpolation, so the model sees a continuous signal, as in paper §4.1.
`python -m export.datasets emoji --out DIR` builds the RGB emoji set (export/datasets/emoji.py).
"""
from __future__ import annotations

import gzip
import math
import pickle
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from export.datasets.base import Dataset, SignalDraw, TrainingData, split_spec
from export.errors import DataError, UsageError, reports_errors  # DataError: raised here, imported from here by callers
from pt_plugin.errors import InputError
from pt_plugin.images import IMAGE_SUFFIXES, read_image, resize_image
from pt_plugin.images import grid_positions as pixel_centers  # noqa: F401 - one definition of the pixel grid

if TYPE_CHECKING:
    from export.config import Config, TrainConfig

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

    def batch(self):
        """One batch; all sets share one |S| (the mask is all true)."""
        n, h, w, _ = self.images.shape
        k = log_uniform_int(self.kmin, self.kmax, self.g)
        bs = min(self.bs, max(1, self.max_tokens // k)) if self.max_tokens else self.bs
        imgs = self.images[torch.randint(n, (bs,), generator=self.g)]
        spos = random_positions(bs, k, h, w, self.snap, self.g)
        qpos = random_positions(bs, self.nq, h, w, self.snap, self.g)
        sval, qval = bilinear(imgs, spos), bilinear(imgs, qpos)
        mask = torch.ones(bs, k, dtype=torch.bool)
        return spos, sval, mask, qpos, qval


# --------------------------------------------------------------------------- registry entries

def holdout_split(images: np.ndarray, spec: str, val_images: int) -> tuple[np.ndarray, np.ndarray]:
    """(held-out, training) images of a data set as training splits them: the last val_images, after a
    seeded shuffle for a folder (its files are sorted by name: not the last names)."""
    if spec.startswith("folder:"):
        images = images[np.random.default_rng(12345).permutation(len(images))]
    return images[-val_images:], images[:-val_images]


def validation_batches(images: np.ndarray, tc: TrainConfig, n_batches: int = 8) -> list:
    """Fixed, seeded validation draws: the same sets every time, across the |S| range."""
    sampler = SetSampler(images, tc.min_samples, tc.max_samples, tc.num_queries,
                         min(32, len(images)), tc.snap_fraction, seed=12345)
    return [sampler.batch() for _ in range(n_batches)]


def image_training(cfg: Config, rank: int) -> TrainingData:
    """Training sets of the spec's training images; a palette fitted to them when the config asks for one."""
    from export.datasets.palette import fit_palette

    tc, mc = cfg.train, cfg.model
    images = load_dataset(tc.data, tc.data_dir, "train")
    if tc.val_images >= len(images):
        raise DataError(f"val_images={tc.val_images} leaves no training images (dataset has {len(images)})")
    val_imgs, train_imgs = holdout_split(images, tc.data, tc.val_images)
    if tc.limit:
        train_imgs = train_imgs[:tc.limit]
    if mc.val_dim != images.shape[-1]:
        raise DataError(f"model val_dim={mc.val_dim} but the images have {images.shape[-1]} channels")
    what = f"{len(train_imgs)} images"
    if tc.palette and len(mc.bin_centers or []) != tc.palette:  # a config that carries them keeps them
        t = time.time()
        try:
            mc.bin_centers = fit_palette(train_imgs, tc.palette, seed=tc.seed).tolist()
        except ValueError as e:
            raise DataError(f"--palette {tc.palette}: {e}") from None
        what += f", a {tc.palette}-colour palette fitted to their pixels in {time.time() - t:.1f} s"

    def image_sampler(step: int) -> SetSampler:
        return SetSampler(train_imgs, tc.min_samples, tc.max_samples, tc.num_queries, tc.batch_size,
                          tc.snap_fraction, seed=tc.seed * 1000 + rank + step, max_set_tokens=tc.max_set_tokens)
    return TrainingData(image_sampler, validation_batches(val_imgs, tc), what)


def image_demo(spec: str, data_dir: str, seed: int) -> dict[str, np.ndarray]:
    """A test image as the demo's truth."""
    return {"truth": load_dataset(spec, data_dir, "test")[seed].astype(np.float32)}


def image_draws(spec: str, data_dir: str, split: str) -> SignalDraw:
    """Sets of random images of a split, drawn as training draws them (half on pixel centres, bilinear)."""
    images = load_dataset(spec, data_dir, split)

    def draw(meta: dict, n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if meta["pos_dim"] != 2 or images.shape[-1] != meta["val_dim"]:
            raise DataError(f"{spec} holds {images.shape[-1]}-channel images; the model takes pos_dim "
                            f"{meta['pos_dim']}, val_dim {meta['val_dim']}")
        g = torch.Generator().manual_seed(int(rng.integers(2**31)))
        h, w = images.shape[1:3]
        pos = random_positions(n, k, h, w, 0.5, g)
        imgs = torch.from_numpy(images[rng.integers(len(images), size=n)])
        return pos.numpy(), bilinear(imgs, pos).numpy().astype(np.float32)
    return draw


def idx_available(spec: str, data_dir: str) -> bool:
    """Whether the IDX training images can be read here (Fashion-MNIST: the Debian package installed)."""
    folder = Path(split_spec(spec)[1] or data_dir)
    return any((folder / f).is_file() for f in (FASHION_FILES["train"][0], FASHION_FILES["train"][0][:-3]))


def folder_available(spec: str, data_dir: str) -> bool:
    return Path(split_spec(spec)[1] or data_dir).is_dir()


def _images(name: str, about: str, available, takes_dir: bool) -> Dataset:
    return Dataset(name, "image", about, None, image_training, image_demo, image_draws, available, takes_dir)


DATASETS = (
    _images("fashion-mnist", "Fashion-MNIST 28×28 grayscale garments (IDX files of dataset-fashion-mnist)",
            idx_available, False),
    _images("idx", "MNIST-style IDX image files in DIR", idx_available, True),
    _images("folder", "a folder of image files (PNG, JPEG, ...) of one size; RGB or gray", folder_available, True),
    _images("cifar10", "CIFAR-10 python batches in DIR", folder_available, True),
)


@reports_errors
def main(argv: list[str] | None = None) -> int:
    """`python -m export.datasets RECIPE ...`: build a data set on disk (recipes: emoji)."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("emoji",):
        raise UsageError(f"no such recipe {argv[0] if argv else ''!r}; "
                         "expected: python -m export.datasets emoji --out DIR [--size 32] [--packages DIR]")
    from export.datasets.emoji import main as emoji_main  # imported when asked for: it needs npm

    return emoji_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
