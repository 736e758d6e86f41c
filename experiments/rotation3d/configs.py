"""Configs of the rotation3d experiment. ``default`` is the paper's job (~20 min on 2 shared CPU cores).

``default``: 2,048 upright training volumes of 9^3 voxels, 384 test volumes under each of the 24
grid rotations and 8 random rotations (12,288 evaluations per model), batch 64, Adam at 0.01
divided by 10 for the last epoch, batch-norm recalibration before testing; epochs: plain CNN 6,
augmented plain CNN 10 (it has to learn 24 orientations of each shape), G-CNN and steerable CNNs
7 each.

Estimate of its wall time, from the throughputs measured on the 2-core development machine
while other trainings ran (load average 4-7), in the smoke config and in runs of 1-7 epochs on
1,024-2,048 volumes of these models: training ~175-200 volumes/s for the plain CNN, ~75/s for
the G-CNN, ~70/s for the SO(3) and ~60/s for the O(3) steerable CNN (e.g. 7 epochs on 2,048
volumes took 208 s for the G-CNN and 238 s for the SO(3) model, each with its compilation,
recalibration and a test on 256 volumes); testing ~350 volumes/s for the plain CNN, ~200-250/s
for the others; compilation ~10 s per model for the plain CNN and the G-CNN, ~30 s for a
steerable model (its training step alone ~20 s). Hence: training 2,048 x (6 + 10) / 190 +
2,048 x 7 x (1/75 + 1/70 + 1/60) ~ 170 + 640 s; testing 12,672 volumes per model (384 x 33, the
inverted copy included) x (2/350 + 1/200 + 1/250 + 1/230) ~ 240 s; recalibration (one forward
pass over the training volumes) ~50 s; compilation ~120 s: ~1,220 s, ~20 min at load ~4-5 (at
load 7 the steps ran up to 1.3x slower: ~25 min; on idle cores less, not measured).

In development (one run per model, lr 0.01 / 10 for the last epoch, tested upright on 256
volumes) 7 epochs on 2,048 volumes gave the G-CNN 94.9 % and the SO(3) steerable CNN 93.0 %, the
chiral pair 97 / 81 % and 84 / 75 % (left / right twist).

``smoke``: 64 training and 16 test volumes, 2 random rotations, one epoch each, no recalibration:
a check of the pipeline, ~1.5-2 min on busy cores (99-118 s at load 4-7), nearly all of it
compiling (the steerable models' training steps ~20 s each).
"""

from __future__ import annotations

import dataclasses
import math

from experiments.common import ExperimentConfig, ModelSpec

MODELS = ("Plain 3D CNN", "Plain 3D CNN + rotation augmentation", "Octahedral G-CNN", "SO(3) steerable CNN",
          "O(3) steerable CNN")
SHAPE_RADIUS = math.sqrt(18) / 2  # in cube edges: the chain's half-diagonal (equilib.data.polycubes)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(ExperimentConfig):
    n_train: int                # upright training volumes (equilib.data.polycubes, balanced over the 8 shapes)
    n_test: int                 # test volumes, each evaluated under every condition
    volume_size: int = 9        # D = H = W (odd: the downsampling by 2 then keeps the grid's centre)
    # the cube edge of the shapes in voxels, drawn uniformly from [low, high]
    scale_range: tuple[float, ...] = (1.0, 1.5)
    noise: float = 0.0          # standard deviation of Gaussian noise on every voxel
    n_random_rotations: int     # the test conditions beyond the 24 grid rotations: uniform random SO(3) rotations
    batch_size: int
    learning_rate: float        # Adam
    lr_decay_last: int = 0      # the learning rate divided by 10 for the last this many epochs of each model
    # batch-norm statistics from one pass over the (augmented, for the augmented model) training
    # volumes before testing, as in experiments.rotation
    bn_recalibration: bool = True
    models: dict[str, ModelSpec]  # model name (one of MODELS) -> how it is trained

    def validate(self) -> None:
        self.require_positive("n_train", "n_test", "volume_size", "n_random_rotations", "batch_size")
        if self.volume_size % 2 == 0:
            raise ValueError(f"`volume_size` must be odd (the downsampling keeps the centre voxel), got "
                             f"{self.volume_size}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"`scale_range` must be [low, high] with 0 < low <= high, got {list(self.scale_range)}")
        if self.scale_range[1] * SHAPE_RADIUS > self.volume_size / 2 - 1:
            raise ValueError(f"`scale_range` {list(self.scale_range)} is too large for `volume_size`="
                             f"{self.volume_size}: the largest cube edge must be <= "
                             f"{(self.volume_size / 2 - 1) / SHAPE_RADIUS:.3f}")
        if self.noise < 0:
            raise ValueError(f"`noise` must be >= 0, got {self.noise}")
        if self.lr_decay_last < 0:
            raise ValueError(f"`lr_decay_last` must be >= 0, got {self.lr_decay_last}")
        self.require_names("models", MODELS)


def _epochs(*epochs: int) -> dict[str, ModelSpec]:
    return {name: ModelSpec(epochs=e) for name, e in zip(MODELS, epochs, strict=True)}


DEFAULT = Config(name="default", seed=0, n_train=2048, n_test=384, n_random_rotations=8, batch_size=64,
                 learning_rate=0.01, lr_decay_last=1, models=_epochs(6, 10, 7, 7, 7))
SMOKE = Config(name="smoke", seed=0, n_train=64, n_test=16, n_random_rotations=2, batch_size=32,
               learning_rate=0.01, bn_recalibration=False, models=_epochs(1, 1, 1, 1, 1))

CONFIGS = {"default": DEFAULT, "smoke": SMOKE}
