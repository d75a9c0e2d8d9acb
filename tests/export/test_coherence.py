"""export.evaluate.coherence on hand-made images with known answers, the independent draws of a shipped model, the
sampler settings a report records (cached exact or hybrid re-encoding), and the samples tables with and without
the coherence and cache keys (older reports still render)."""
import json
from pathlib import Path

import numpy as np
import pytest

import pt_plugin
from export.evaluate import video
from export.evaluate.coherence import (
    INDEPENDENT_STREAM,
    coherence_stats,
    independent_draws,
    isolated_fraction,
    total_variation,
)
from export.evaluate.images import observed_indices, sampler_phrase, sampler_settings, samples_lines, samples_table
from export.evaluate.protocol import load_shipped
from pt_plugin.sampling import ALL_POSITIONS, DEFAULT_AUTOREGRESSIVE, DEFAULT_STEP_FRACTION

ROOT = Path(__file__).resolve().parents[2]


def checkerboard(h: int, w: int) -> np.ndarray:
    """[H·W, 1] of 0/1 alternating in both directions."""
    return (np.indices((h, w)).sum(0) % 2).reshape(h * w, 1).astype(np.float64)


def one_bright(h: int, w: int, at: int) -> np.ndarray:
    """[H·W, 1] black with one white pixel at flat index `at`."""
    img = np.zeros((h * w, 1))
    img[at] = 1.0
    return img


# ------------------------------------------------------------------------------------ the measures

def test_a_constant_image_is_perfectly_coherent():
    img = np.full((2, 3, 25, 1), 0.4)  # leading axes (images, samples) are kept
    np.testing.assert_array_equal(total_variation(img, (5, 5)), np.zeros((2, 3)))
    np.testing.assert_array_equal(isolated_fraction(img, (5, 5)), np.zeros((2, 3)))


def test_a_checkerboard_is_all_specks():
    img = checkerboard(4, 6)
    assert total_variation(img, (4, 6)) == pytest.approx(1.0)
    assert isolated_fraction(img, (4, 6)) == pytest.approx(1.0)


def test_one_bright_pixel_in_the_middle_and_in_a_corner():
    """5×5: 40 neighbour pairs. The centre touches 4 of them, a corner 2; either pixel is the only isolated one
    (a corner has only its two existing neighbours)."""
    centre, corner = one_bright(5, 5, 12), one_bright(5, 5, 0)
    assert total_variation(centre, (5, 5)) == pytest.approx(4 / 40)
    assert total_variation(corner, (5, 5)) == pytest.approx(2 / 40)
    assert isolated_fraction(centre, (5, 5)) == pytest.approx(1 / 25)
    assert isolated_fraction(corner, (5, 5)) == pytest.approx(1 / 25)
    np.testing.assert_allclose(total_variation(centre[:, 0], (5, 5)), 0.1)  # [D] is one channel


def test_colour_distances_are_the_l2_norm_over_channels():
    """Stripes one pixel wide whose colours differ by (0.6, 0.8, 0), |·| = 1: 9 horizontal pairs at 1, 8 vertical
    at 0. A speck (0.2, 0.2, 0.2) off its grey surroundings is 0.35 away (isolated), though each channel is within
    0.3; (0.1, 0.1, 0.1) is not."""
    stripes = np.zeros((3, 4, 3))
    stripes[:, 1::2] = [0.6, 0.8, 0.0]
    flat = stripes.reshape(12, 3)
    assert total_variation(flat, (3, 4)) == pytest.approx(9 / 17)
    assert isolated_fraction(flat, (3, 4)) == 0  # every pixel has a vertical neighbour of its own colour
    for step, want in ((0.2, 1 / 9), (0.1, 0.0)):
        img = np.full((9, 3), 0.5)
        img[4] += step
        assert isolated_fraction(img, (3, 3)) == pytest.approx(want)
        assert total_variation(img, (3, 3)) == pytest.approx(4 * step * np.sqrt(3) / 12)


def test_video_frames_are_measured_one_by_one():
    """Shape (T, H, W): no pairs across frames. Frame 0 a checkerboard, frame 1 white: TV and isolated 0.5 (the
    mean of the frames'); two constant frames of different values: 0."""
    clip = np.concatenate([checkerboard(3, 3), np.ones((9, 1))])
    assert total_variation(clip, (2, 3, 3)) == pytest.approx(0.5)
    assert isolated_fraction(clip, (2, 3, 3)) == pytest.approx(0.5)
    steps = np.concatenate([np.zeros((9, 1)), np.ones((9, 1))])[None, None]  # [1, 1, D, 1]
    np.testing.assert_array_equal(total_variation(steps, (2, 3, 3)), [[0.0]])
    np.testing.assert_array_equal(isolated_fraction(steps, (2, 3, 3)), [[0.0]])


def test_a_single_pixel_has_no_pairs():
    assert total_variation(np.ones((1, 1)), (1, 1)) == 0 and isolated_fraction(np.ones((1, 1)), (1, 1)) == 0


def test_coherence_stats_means_and_ratios():
    """Means over images and draws of each set, ratios to the truth's; None where the truth has none."""
    truth = np.stack([one_bright(5, 5, 12), one_bright(5, 5, 0)])          # TV 0.1, 0.05; isolated 1/25 each
    samples = np.stack([checkerboard(5, 5)] * 2)[:, None].repeat(2, 1)     # TV 1, isolated 1
    independent = np.zeros_like(samples)
    c = coherence_stats(samples, truth, independent, (5, 5))
    assert c["tv"]["truth"] == pytest.approx(0.075) and c["tv"]["samples"] == pytest.approx(1.0)
    assert c["tv"]["samples_over_truth"] == pytest.approx(1 / 0.075) and c["tv"]["independent_over_truth"] == 0
    assert c["isolated"]["samples_over_truth"] == pytest.approx(25.0)
    flat = coherence_stats(samples, np.zeros_like(truth), independent, (5, 5))
    assert flat["tv"]["samples_over_truth"] is None and flat["isolated"]["independent_over_truth"] is None


# ----------------------------------------------------------------------------- the shipped models

@pytest.fixture(scope="module")
def fashion():
    return load_shipped(ROOT / "weights" / "fashion-mnist", threads=1).model


def test_independent_draws_are_the_per_pixel_law_given_s(fashion):
    """Every unobserved pixel is Model.query(S, its position).sample with the stream (seed + 7919, |S|, image), the
    observed pixels stay as in the truth, and the draws stay in the value range."""
    imgs = np.random.default_rng(1).integers(0, 256, (2, 784, 1)) / 255
    idx = observed_indices(2, 784, 16, 0)
    got = independent_draws(fashion, imgs, idx, 2, seed=3)
    assert got.shape == (2, 2, 784, 1) and got.min() >= 0 and got.max() <= 1
    np.testing.assert_array_equal(got[1][:, idx[1]], np.repeat(imgs[1, idx[1]][None], 2, 0))
    grid = pt_plugin.grid_positions(28, 28)
    free = np.setdiff1d(np.arange(784), idx[1])
    dist = fashion.query((grid[idx[1]], imgs[1, idx[1]]), grid[free])
    rng = np.random.default_rng([3 + INDEPENDENT_STREAM, 16, 1])
    for s in range(2):
        np.testing.assert_allclose(got[1, s, free], dist.sample(rng), atol=1e-6)
    assert not np.array_equal(got[1, 0], got[1, 1])


class NoCacheGraphs:
    """What sampler_settings asks of a model, answered by pt_plugin.Model's own code for one without cache graphs
    (which bundled models have them changes as they are re-exported)."""
    meta = {"name": "no-cache"}
    has_cache = False
    sampling_plan = pt_plugin.Model.sampling_plan
    buffer_plan = pt_plugin.Model.buffer_plan


def test_the_recorded_sampler_is_the_path_the_runtime_takes():
    """Without cache graphs: hybrid re-encoding with its defaults. With them (gp-curves): every position drawn
    exactly over cached keys and values, with the buffer bound the weights were tuned with."""
    st = sampler_settings(NoCacheGraphs())
    assert st == {"sampler": "pt_plugin.Model.sample (hybrid autoregressive)", "cache": False,
                  "autoregressive": DEFAULT_AUTOREGRESSIVE, "step_fraction": DEFAULT_STEP_FRACTION,
                  "buffer_size": None}
    assert sampler_phrase(st, 784) == f"hybrid re-encoding: step_fraction {DEFAULT_STEP_FRACTION:g}, N′ every position"
    assert sampler_phrase(st, 8192) == f"hybrid re-encoding: step_fraction {DEFAULT_STEP_FRACTION:g}, N′ 2048"
    curves = load_shipped(ROOT / "weights" / "gp-curves", threads=1).model
    cached = sampler_settings(curves)
    buffer = curves.meta["cache"].get("buffer_size")
    assert cached["cache"] and cached["autoregressive"] == ALL_POSITIONS and cached["step_fraction"] == 0
    assert cached["buffer_size"] == buffer
    phrase = sampler_phrase(cached, 784)
    assert phrase.startswith("cached exact (every pixel drawn one at a time over cached keys and values")
    assert f"every {buffer} draws" in phrase and str(ALL_POSITIONS) not in phrase
    assert "never encoded again" in sampler_phrase({**cached, "buffer_size": None}, 784)


# ------------------------------------------------------------------------------------------- reports

LEGACY_SAMPLER = {"sampler": "pt_plugin.Model.sample (hybrid autoregressive)", "step_fraction": 0.1,
                  "autoregressive": 2048}


def legacy(report: dict) -> dict:
    """A report as written before the settings recorded the sampler's path ("cache", "buffer_size") and before
    coherence: a bundled report with those keys taken out, should it have them."""
    report = json.loads(json.dumps(report))
    st = report["settings"]
    for key in ("cache", "buffer_size"):
        st.pop(key, None)
    st.update(LEGACY_SAMPLER)
    for r in report["sizes"].values():
        r.get("samples", {}).pop("coherence", None)
    return report


def legacy_report() -> dict:
    """The bundled gray report in its older form (legacy)."""
    return legacy(json.loads((ROOT / "docs" / "fashion-mnist" / "metrics.json").read_text()))


CACHED = {"cache": True, "autoregressive": ALL_POSITIONS, "step_fraction": 0.0, "buffer_size": 64}


def with_coherence(report: dict, **settings) -> dict:
    """A copy with these sampler settings and a coherence entry at every sampled |S|."""
    report = json.loads(json.dumps(report))
    report["settings"].update(settings)
    for r in report["sizes"].values():
        if "samples" in r:
            r["samples"]["coherence"] = {
                "tv": {"samples": 0.2, "truth": 0.1, "independent": 0.4, "samples_over_truth": 2.0,
                       "independent_over_truth": 4.0},
                "isolated": {"samples": 0.05, "truth": 0.0, "independent": 0.3, "samples_over_truth": None,
                             "independent_over_truth": None}, "threshold": 0.3}
    return report


def test_the_samples_block_renders_without_the_new_keys():
    report = legacy_report()
    table = samples_table(report)
    assert table.splitlines()[0] == (r"| \|S\| | per-pixel std across samples | sample MSE | "
                                     "mean-image MSE (same images) |")
    assert "TV" not in table
    lines = "\n".join(samples_lines(report))
    assert "hybrid re-encoding: step_fraction 0.1, N′ every position" in lines and "TV" not in lines


def test_the_samples_block_renders_coherence_and_the_cached_path():
    report = with_coherence(legacy_report(), **CACHED)
    table = samples_table(report)
    assert "| TV samples / truth | isolated samples / truth | independent draws / truth (TV, isolated) |" in table
    size = next(s for s, r in report["sizes"].items() if "samples" in r)
    row = next(line for line in table.splitlines() if line.startswith(f"| {size} |"))
    assert row.endswith("| 0.200 / 0.100 (2.00×) | 0.050 / 0.000 (—) | 4.00×, — |")
    lines = "\n".join(samples_lines(report))
    assert "cached exact (every pixel drawn one at a time over cached keys and values, the set encoded again " \
           "every 64 draws)" in lines
    assert "independent draws / truth (TV, isolated)" in lines and "farther than 0.3" in lines


def test_the_video_table_with_and_without_the_new_keys():
    """An older video report renders its sampler sentence word for word as before (the bundled card stays a fresh
    rendering); a new one names the path and adds the coherence columns."""
    report = legacy(json.loads((ROOT / "docs" / "moving-fashion" / "metrics.json").read_text()))
    old = video.markdown(report)
    assert "drawn by the runtime's sampler with its defaults (N′ 2048, step fraction 0.1)." in old
    assert "TV" not in old
    new = video.markdown(with_coherence(report, cache=False, buffer_size=None))
    assert "with the model's defaults: hybrid re-encoding: step_fraction 0.1, N′ 2048." in new
    assert "| 0.200 / 0.100 (2.00×) | 0.050 / 0.000 (—) | 4.00×, — |" in new and "frame by frame" in new
    table = [line for line in new.splitlines() if line.startswith("|")]
    assert "| independent draws / truth (TV, isolated) |" in table[0]
    assert len({line.replace("\\|", "").count("|") for line in table}) == 1  # every row as wide as the header
    cached = video.markdown(with_coherence(report, **CACHED))
    assert "cached exact (every voxel drawn one at a time over cached keys and values, the set encoded again " \
           "every 64 draws)." in cached
