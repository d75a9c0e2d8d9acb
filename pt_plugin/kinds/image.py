"""Images (x, y) -> gray or RGB: read PNG/JPEG files, observe random pixels or a mask, write paper Fig. 4 grids."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..images import figure_grid, observe_mask, read_image, resize_image, samples_picture
from .base import Kind, Observation, Outputs
from .pictures import save_picture

if TYPE_CHECKING:
    from ..model import Model

PACKAGE_DEMO = Path(__file__).resolve().parent.parent / "data" / "demo.png"


def _nearest(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An [H, W, C] image shown at another size by nearest neighbour (truth next to a super-resolved mean)."""
    h, w = image.shape[:2]
    rows = np.minimum((np.arange(shape[0]) + 0.5) * h // shape[0], h - 1).astype(int)
    cols = np.minimum((np.arange(shape[1]) + 0.5) * w // shape[1], w - 1).astype(int)
    return image[rows][:, cols]


class ImageKind(Kind):
    name = "image"
    input_help = "an image file"

    def demo(self, model: "Model") -> Observation:
        if (Path(model.path) / "demo.npz").is_file() or model.val_dim != 1:
            return super().demo(model)
        return self.read(model, PACKAGE_DEMO, resize=True, source="demo")  # the grayscale demo garment

    def read(self, model: "Model", path: Path, resize: bool, source: str = "") -> Observation:
        img = read_image(path, model.val_dim)
        grid = model.grid
        if grid and img.shape[:2] != tuple(grid):
            if not resize:
                raise InputError(f"{path} is {img.shape[1]}x{img.shape[0]} pixels but model {model.meta['name']} "
                                 f"works on {grid[1]}x{grid[0]}; pass --resize to resize it")
            img = resize_image(img, grid[0], grid[1])
        return Observation(np.zeros((0, 2), np.float32), np.zeros((0, model.val_dim), np.float32), img.shape[:2],
                           truth=img, source=source or str(path))

    def observe_mask(self, obs: Observation, mask_path: Path) -> Observation:
        """The pixels where the mask image is white (> 0.5) are observed."""
        if not Path(mask_path).is_file():
            raise InputError(f"mask not found: {mask_path}")
        mask = read_image(mask_path, 1)[..., 0]
        if mask.shape != obs.truth.shape[:2]:
            raise InputError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}; it must match the image, "
                             f"{obs.truth.shape[1]}x{obs.truth.shape[0]}")
        obs.positions, obs.values = observe_mask(obs.truth, mask)
        return obs

    def write(self, out: Path, obs: Observation, res: Outputs, model: "Model", scale: int,
              out_dir: Path | None = None) -> list[Path]:
        """One PNG row: truth | observed pixels | mean | samples (or | std when there are no samples)."""
        shape = res.mean.shape[:2]
        truth = _nearest(obs.truth, shape) if obs.truth is not None else np.ones(shape + (3,), np.float32)
        seen_at = obs.truth.shape[:2] if obs.truth is not None else shape  # S painted on the input's pixels
        picture = _nearest(samples_picture(obs.positions, obs.values, seen_at), shape)
        last = list(res.samples) if len(res.samples) else [res.std / max(float(res.std.max()), 1e-6)]
        written = [save_picture(out, figure_grid([[truth, picture, res.mean, *last]], scale=scale))]
        if out_dir is not None:
            d = Path(out_dir)
            if d.exists() and not d.is_dir():
                raise InputError(f"--out-dir {d} exists and is not a folder")
            tiles = {"truth.png": truth, "observed.png": picture, "mean.png": res.mean}
            tiles.update({f"sample_{i:02d}.png": s for i, s in enumerate(res.samples)})
            written += [save_picture(d / name, figure_grid([[im]], scale=1, gap=0)) for name, im in tiles.items()]
        return written
