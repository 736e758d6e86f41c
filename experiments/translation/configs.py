"""Configs of the translation experiment (the seed's Figures 3-4, and its claim about small rotations/scalings)."""

from __future__ import annotations

import dataclasses

from experiments.common import ExperimentConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(ExperimentConfig):
    n_train: int
    n_test: int
    epochs: int                          # the same for the four networks
    batch_size: int
    learning_rate: float                 # Adam, constant
    width: int                           # channels: width, 2 width, 2 width
    max_shift: int                       # feature change vs shift 0..max_shift px
    consistency_pairs: int               # random shift pairs per image, in [-3, 3)
    angles: tuple[int | float, ...]      # small rotations (degrees)
    scales: tuple[float, ...]            # small scalings

    def validate(self) -> None:
        # max_shift >= 1: the table reads the feature change at 1 px
        self.require_positive("n_train", "n_test", "epochs", "batch_size", "width", "max_shift", "consistency_pairs")
        if not self.angles or not self.scales:
            raise ValueError("`angles` and `scales` must each hold at least one value")


DEFAULT = Config(name="default", seed=0, n_train=20_000, n_test=2_000, epochs=2, batch_size=128, learning_rate=1e-3,
                 width=16, max_shift=6, consistency_pairs=4, angles=(0, 5, 10, 15, 20, 30, 45),
                 scales=(0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3))
SMOKE = dataclasses.replace(DEFAULT, name="smoke", n_train=256, n_test=64, epochs=1, batch_size=64, max_shift=2,
                            consistency_pairs=1, angles=(0, 15), scales=(0.9, 1.0))

CONFIGS = {"default": DEFAULT, "smoke": SMOKE}
