"""Data readers and the (S, Q) sampler."""
import gzip
import struct

import numpy as np
import pytest
import torch

from export.config import Config, ConfigError, ModelConfig
from export.datasets.images import DataError, SetSampler, bilinear, load_idx_images, pixel_centers, read_idx


def test_sampler_positions_inside_the_square_and_values_bilinear():
    imgs = np.random.default_rng(0).random((5, 6, 7, 1)).astype(np.float32)
    s = SetSampler(imgs, 4, 50, 30, batch_size=3, snap_fraction=0.5, seed=0)
    for _ in range(5):
        spos, sval, mask, qpos, qval = s.batch()
        assert spos.abs().max() <= 1 and qpos.abs().max() <= 1
        assert 4 <= spos.shape[1] <= 50 and qpos.shape[1] == 30 and mask.all()
        assert sval.min() >= 0 and sval.max() <= 1


def test_bilinear_at_pixel_centres_is_the_pixel():
    img = torch.rand(2, 5, 4, 1)
    pos = torch.from_numpy(pixel_centers(5, 4)).expand(2, -1, -1)
    torch.testing.assert_close(bilinear(img, pos), img.reshape(2, 20, 1))


def test_bilinear_between_two_pixels_is_their_average():
    img = torch.zeros(1, 1, 2, 1)
    img[0, 0, 1, 0] = 1.0
    mid = torch.tensor([[[0.0, 0.0]]])  # halfway between the two pixel centres
    assert abs(bilinear(img, mid).item() - 0.5) < 1e-6


def write_idx(path, arr):
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes())


def test_idx_round_trip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), arr)
    assert load_idx_images(tmp_path).shape == (2, 3, 4, 1)
    raw = gzip.open(tmp_path / "train-images-idx3-ubyte.gz").read()
    with gzip.open(tmp_path / "cut.gz", "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "foreign.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="could not be read"):
        read_idx(tmp_path / "foreign.gz")
    with gzip.open(tmp_path / "png.gz", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n....")
    with pytest.raises(DataError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "png.gz")


def test_missing_data_folder_names_expected_files(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_idx_images(tmp_path / "nowhere")


def test_bins_that_do_not_fit_val_dim_are_refused():
    with pytest.raises(ConfigError, match="bin_centers"):
        ModelConfig(val_dim=3, num_bins=32).validate()
    with pytest.raises(ConfigError, match="val_dim=3"):
        ModelConfig(val_dim=3, bin_centers=[[0.0, 0.0]]).validate()
    with pytest.raises(ConfigError, match="unknown config keys"):
        Config.from_dict({"model": {"colour": 1}})


def test_training_refuses_bad_config_before_starting(tmp_path, capsys):
    from export.train import main

    assert main(["--val-dim", "3", "--num-bins", "16", "--out", str(tmp_path)]) == 2
    assert "bin_centers" in capsys.readouterr().err
    assert main(["--data", "idx:" + str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
