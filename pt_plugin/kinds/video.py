"""Videos (x, y, t) -> gray or RGB: read a GIF or a folder of frames, write an animation and a frame strip
(paper Fig. 10)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..files import atomic
from ..grids import cell_index
from ..images import IMAGE_SUFFIXES, composite, figure_grid, read_image, resize_image, samples_picture
from ..text import plural
from .base import Kind, Observation, Outputs
from .image import fit_scale
from .pictures import picture_format, save_picture
from .plans import axis_label, slice_panels, spread, tile

if TYPE_CHECKING:
    from ..acquisition import Acquisition
    from ..model import Model


def held_frames(frames: list, durations: list[float]) -> list:
    """Each frame as many times as it is shown for multiples of the shortest duration. GIF writers (Pillow
    among them) merge identical consecutive frames into one frame shown longer: without this a static stretch
    of a clip would read back with fewer frames than were written. Frames without a duration count once."""
    shown = [d for d in durations if d and d > 0]
    if not shown:
        return frames
    base = min(shown)
    return [f for f, d in zip(frames, durations) for _ in range(max(1, round(d / base)) if d and d > 0 else 1)]


def read_frames(path: Path, channels: int, background: str = "white") -> np.ndarray:
    """[T, H, W, C] in [0, 1] from an animated GIF/PNG/WebP or a folder of frame images (sorted by name);
    transparency is composited on `background`; a frame shown k times as long as the shortest counts k times
    (held_frames)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no frames ({', '.join(IMAGE_SUFFIXES)}) in {path}")
        frames = [read_image(p, channels, background) for p in files]
    elif path.is_file():
        try:
            with Image.open(path) as im:
                frames, durations = [], []
                for f in ImageSequence.Iterator(im):
                    durations.append(f.info.get("duration") or 0)
                    frames.append(np.asarray(composite(f.copy(), background).convert("L" if channels == 1 else "RGB"),
                                             np.float32) / 255)
            frames = held_frames(frames, durations)
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"{path} is not a readable animation ({e})") from None
        frames = [f[..., None] if f.ndim == 2 else f for f in frames]
    else:
        raise InputError(f"clip not found: {path} (an animated GIF or a folder of frames)")
    if len({f.shape for f in frames}) > 1:
        raise InputError(f"the frames of {path} differ in size")
    return np.stack(frames)


ANIMATIONS = (".gif", ".png", ".webp")  # what --out may end in for a video


def _frames(n: int, h: int, w: int) -> str:
    return f"{plural(n, 'frame')} of {w}x{h}"


class VideoKind(Kind):
    name = "video"
    input_help = "an animated GIF (or PNG / WebP) or a folder of frame images"
    default_suffix = ".gif"  # an animation; the frame strip is written beside it
    takes_folders = True

    def default_scale(self, shape: tuple[int, ...]) -> int:
        return fit_scale(*shape[-2:])

    def check_out(self, out: Path) -> None:
        """An animation: .gif, .png (APNG) or .webp."""
        if Path(out).suffix.lower() not in ANIMATIONS:
            raise InputError(f"a video is written as an animation: give --out NAME.gif (or .png / .webp), not {out}")

    def read(self, model: "Model", path: Path, resize: bool, background: str = "white") -> Observation:
        clip = self.fit_grid(model, path, read_frames(path, model.val_dim, background), resize)
        return Observation(np.zeros((0, 3), np.float32), np.zeros((0, model.val_dim), np.float32), clip.shape[:3],
                           truth=clip, source=str(path))

    def size_words(self, shape: tuple[int, ...]) -> str:
        return _frames(*shape)

    def resample(self, truth: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """The frames nearest in time to the wanted ones (each at (t + 0.5)/T of the clip), resized."""
        t_len = truth.shape[0]
        pick = np.minimum((np.arange(shape[0]) + 0.5) * t_len // shape[0], t_len - 1).astype(int)
        return np.stack([resize_image(truth[t], shape[1], shape[2]) for t in pick])

    def panels(self, obs: Observation, res: Outputs) -> list[list[np.ndarray]]:
        """Per frame t: truth | samples observed in frame t | mean | samples (or | std, scaled to its largest
        value over the clip, when there are no samples)."""
        t_len, h, w = res.mean.shape[:3]
        frame_of = np.clip(np.floor((obs.positions[:, 2] + 1) / 2 * t_len), 0, t_len - 1).astype(int)
        last = res.samples if len(res.samples) else (res.std / max(float(res.std.max()), 1e-6))[None]
        rows = []
        for t in range(t_len):
            truth = obs.truth[t] if obs.truth is not None and obs.truth.shape[:3] == res.mean.shape[:3] else \
                np.ones((h, w, 3), np.float32)
            here = frame_of == t
            seen = samples_picture(obs.positions[here, :2], obs.values[here], (h, w))
            rows.append([truth, seen, res.mean[t], *last[:, t]])
        return rows

    def output_paths(self, out: Path, out_dir: Path | None, num_samples: int) -> dict[str, Path]:
        out = Path(out)
        return {"animation": out, "frame strip": out.with_name(out.stem + "_frames.png")}

    def write(self, out: Path, obs: Observation, res: Outputs, model: "Model", scale: int,
              out_dir: Path | None = None) -> list[Path]:
        """An animated GIF (one panel row per frame) and a frame strip PNG (rows: truth, S, mean, samples or std)."""
        from PIL import Image

        self.check_out(out)
        out, strip = self.output_paths(out, out_dir, len(res.samples)).values()
        per_frame = self.panels(obs, res)
        frames = [Image.fromarray(figure_grid([row], scale=scale)) for row in per_frame]
        with atomic(out) as tmp:
            frames[0].save(tmp, format=picture_format(out), save_all=True, append_images=frames[1:], duration=250,
                           loop=0)
        columns = list(zip(*per_frame))  # one row per panel kind, one column per frame
        save_picture(strip, figure_grid([list(c) for c in columns], scale=max(1, scale // 2)))
        return [out, strip]

    def plan_picture(self, path: Path, obs: Observation, plan: "Acquisition", res: Outputs, model: "Model",
                     scale: int) -> None:
        """The std given S in every frame that holds a pick, the picks numbered and S outlined."""
        shape = res.mean.shape[:3]
        observed = np.stack(np.unravel_index(cell_index(obs.positions, shape)[0], shape), -1)
        rows = slice_panels(spread(res.std), plan.cells(), observed, scale, axis_label("t", shape[0]))
        save_picture(path, tile(rows))

    def plan_caption(self, plan: "Acquisition") -> str:
        return f"the std given S in each frame with a pick, {plural(len(plan), 'pick')} numbered; a table of them"
