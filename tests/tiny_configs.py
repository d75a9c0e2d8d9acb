"""Untrained tiny networks of every kind's shape, for exactness tests that need no training (the causal buffer)."""
from export.config import ModelConfig

CONFIGS = {  # image (2 → 1), RGB (2 → 3, a palette), curve (1 → 1), volume and video (3 → 1)
    "image": ModelConfig(d_model=32, n_heads=2, enc_layers=2, dec_layers=2, ffn=48, num_bins=8, init_std=0.2),
    "rgb": ModelConfig(val_dim=3, d_model=32, n_heads=2, enc_layers=1, dec_layers=3, ffn=48, init_std=0.2,
                       bin_centers=[[0.1, 0.2, 0.3], [0.9, 0.1, 0.5], [0.4, 0.4, 0.8], [0.0, 1.0, 0.0]]),
    "curve": ModelConfig(pos_dim=1, d_model=16, n_heads=2, enc_layers=3, dec_layers=1, ffn=24, num_bins=5,
                         value_range=(-5.0, 5.0), init_std=0.2),
    "volume": ModelConfig(pos_dim=3, d_model=32, n_heads=4, enc_layers=1, dec_layers=2, ffn=48, num_bins=8,
                          value_range=(-0.3, 0.3), init_std=0.2, normalize_values=True),
}
