"""Images (x, y) -> gray or RGB: read PNG/JPEG files, observe random pixels or a mask, write paper Fig. 4 grids."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..images import IMAGE_SUFFIXES, figure_grid, observe_mask, read_image, resize_image, samples_picture
from ..text import plural
from .base import Kind, Observation, Outputs
from .pictures import save_picture
from .plans import picture_panel, spread, std_panel, tile, titled

if TYPE_CHECKING:
    from ..acquisition import Acquisition
    from ..model import Model

PACKAGE_DEMO = Path(__file__).resolve().parent.parent / "data" / "demo.png"


def _nearest(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An [H, W, C] image shown at another size by nearest neighbour (truth next to a super-resolved mean)."""
    h, w = image.shape[:2]
    rows = np.minimum((np.arange(shape[0]) + 0.5) * h // shape[0], h - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * w // shape[1], w - 1).astype(int)
    return image[rows][:, cols]


def fit_scale(h: int, w: int, most: int = 4, side: int = 512) -> int:
    """The largest enlargement up to `most` that keeps a panel's longer side within `side` pixels (at least 1)."""
    return max(1, min(most, side // max(h, w, 1)))


TILES = ("truth", "observed", "mean")  # the pictures --out-dir gets, then sample_00.png, ...


class ImageKind(Kind):
    name = "image"
    input_help = f"an image file ({', '.join(IMAGE_SUFFIXES)}, .tif)"
    writes_out_dir = True
    batchable = True

    def check_input(self, path: Path, points: bool, model_name: str) -> None:
        super().check_input(path, points, model_name)
        if Path(path).suffix.lower() in (".csv", ".txt", ".npy", ".npz"):
            raise InputError(f"{path} is not an image; model {model_name} is an image model and reads "
                             f"{self.input_help} (CSV points are for curve and volume models)")

    def default_scale(self, shape: tuple[int, ...]) -> int:
        return fit_scale(*shape[-2:])

    def demo(self, model: "Model") -> Observation:
        if (Path(model.path) / "demo.npz").is_file() or model.val_dim != 1:
            return super().demo(model)
        return self.read(model, PACKAGE_DEMO, resize=True, source="demo")  # the grayscale demo garment

    def read(self, model: "Model", path: Path, resize: bool, background: str = "white",
             source: str = "") -> Observation:
        """An image file (transparency composited on `background`), resized to the model's grid with resize."""
        img = self.fit_grid(model, path, read_image(path, model.val_dim, background), resize)
        return Observation(np.zeros((0, 2), np.float32), np.zeros((0, model.val_dim), np.float32), img.shape[:2],
                           truth=img, source=source or str(path))

    def size_words(self, shape: tuple[int, ...]) -> str:
        return f"{shape[1]}x{shape[0]} pixels"

    def resample(self, truth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return resize_image(truth, *shape)

    def observe_mask(self, obs: Observation, mask_path: Path, resize: bool = False) -> Observation:
        """The pixels where the mask image is white (> 0.5) are observed; with resize, a mask of another
        size is resized to the image first."""
        if not Path(mask_path).is_file():
            raise InputError(f"mask not found: {mask_path}")
        mask = read_image(mask_path, 1)
        h, w = obs.truth.shape[:2]
        if mask.shape[:2] != (h, w):
            if not resize:
                raise InputError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}; it must match the image, "
                                 f"{w}x{h}, or pass --resize to resize it")
            mask = resize_image(mask, h, w)
        obs.positions, obs.values = observe_mask(obs.truth, mask[..., 0])
        return obs

    def output_paths(self, out: Path, out_dir: Path | None, num_samples: int) -> dict[str, Path]:
        paths = {"picture": Path(out)}
        if out_dir is not None:
            names = [*TILES, *(f"sample_{i:02d}" for i in range(num_samples))]
            paths.update({f"--out-dir picture {n}.png": Path(out_dir) / f"{n}.png" for n in names})
        return paths

    def write(self, out: Path, obs: Observation, res: Outputs, model: "Model", scale: int,
              out_dir: Path | None = None) -> list[Path]:
        """One picture row: truth | observed pixels | mean | samples (or | std when there are no samples)."""
        shape = res.mean.shape[:2]
        truth = _nearest(obs.truth, shape) if obs.truth is not None else np.ones(shape + (3,), np.float32)
        seen_at = obs.truth.shape[:2] if obs.truth is not None else shape  # S painted on the input's pixels
        picture = _nearest(samples_picture(obs.positions, obs.values, seen_at), shape)
        last = list(res.samples) if len(res.samples) else [res.std / max(float(res.std.max()), 1e-6)]
        paths = list(self.output_paths(out, out_dir, len(res.samples)).values())
        written = [save_picture(paths[0], figure_grid([[truth, picture, res.mean, *last]], scale=scale))]
        if out_dir is not None:
            d = Path(out_dir)
            if d.exists() and not d.is_dir():
                raise InputError(f"--out-dir {d} exists and is not a folder")
            tiles = [truth, picture, res.mean, *res.samples]
            written += [save_picture(p, figure_grid([[im]], scale=1, gap=0)) for p, im in zip(paths[1:], tiles)]
        return written

    def plan_picture(self, path: Path, obs: Observation, plan: "Acquisition", res: Outputs, model: "Model",
                     scale: int) -> None:
        """truth | S | mean | the std given S with the picks numbered, one titled row."""
        shape = res.mean.shape[:2]
        seen_at = obs.truth.shape[:2] if obs.truth is not None else shape
        std = spread(res.std)
        panels = [titled(picture_panel(_nearest(obs.truth, shape), scale), "truth")] if obs.truth is not None else []
        panels += [titled(picture_panel(_nearest(samples_picture(obs.positions, obs.values, seen_at), shape), scale),
                          f"S: {plural(len(obs.positions), 'sample')}"),
                   titled(picture_panel(res.mean, scale), "mean given S"),
                   titled(std_panel(std, float(std.max()), scale, [(r, c, n + 1) for n, (r, c) in
                                                                   enumerate(plan.cells())]),
                          f"std given S, {plural(len(plan), 'pick')} ({plan.criterion})")]
        save_picture(path, tile([panels]))

    def plan_caption(self, plan: "Acquisition") -> str:
        return f"truth | observed | mean | std with {plural(len(plan), 'pick')} numbered; a table of them"
