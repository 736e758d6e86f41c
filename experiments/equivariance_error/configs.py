"""Configs of the equivariance-error experiment (issue 8, part 4)."""

from __future__ import annotations

import dataclasses

from experiments.common import ExperimentConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(ExperimentConfig):
    n_digits: int               # MNIST test digits the errors are measured on
    angle_step_degrees: int     # the angles 0, step, ... < 360 (the elements of C_{360/step})
    input_blur_sigma: float     # px; band-limits the digits for the layer curves (see run.py); 0: none
    layer_seeds: int            # random initialisations averaged (RMS) per layer
    n_train: int                # for the networks' "after training" curves
    epochs: int
    batch_size: int
    learning_rate: float

    def validate(self) -> None:
        self.require_positive("n_digits", "angle_step_degrees", "layer_seeds", "n_train", "epochs", "batch_size")
        if 360 % self.angle_step_degrees:
            raise ValueError(f"`angle_step_degrees` must divide 360, got {self.angle_step_degrees}")
        if self.input_blur_sigma < 0:
            raise ValueError(f"`input_blur_sigma` must be >= 0, got {self.input_blur_sigma}")


DEFAULT = Config(name="default", seed=0, n_digits=16, angle_step_degrees=5, input_blur_sigma=1.0, layer_seeds=8,
                 n_train=10_000, epochs=1, batch_size=128, learning_rate=1e-3)
SMOKE = dataclasses.replace(DEFAULT, name="smoke", n_digits=2, angle_step_degrees=45, layer_seeds=2, n_train=256,
                            batch_size=64)

CONFIGS = {"default": DEFAULT, "smoke": SMOKE}
