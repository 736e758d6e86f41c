"""Configs of the shift-consistency experiment (circular shifts, the APS protocol, on MNIST).

``default`` is sized for about 25 minutes on 2 idle CPU cores (it was 15,000 digits x 2 epochs,
~9 minutes, until the C4 networks got a head that keeps the rotation axis: at that budget every
network is under-trained, 84-92 % test accuracy, and one seed's gaps between them are noise of a
few points; 30,000 x 3 trains them further). Measured on this 2-core machine
(while shared, so from process CPU time; jax 0.10, two host devices), per training image and
epoch: plain max-pool 1.2 ms CPU, plain MaxBlurPool 1.7, plain APS 1.7, C4 max-pool 3.0,
C4 MaxBlurPool 4.9, C4 APS 5.0, i.e. 17.5 ms CPU for all six, ~10-13 ms of wall time on two
idle cores; a forward pass (evaluation) costs ~3.5 ms CPU per image for all six. Compiling
costs ~10 s per model (train step, ~3 s more for the forward pass), ~90 s in all with the
checkpoints. So 15,000 digits x 2 epochs (30,000 image-passes: ~310-400 s), plus
2,000 test digits x (1 accuracy + 2 x 2 consistency) forwards and 4 digits x 784 shifts x 2
(trained and untrained) forwards (~30-45 s), came to about 7.5-9 minutes; the default's
90,000 image-passes take three times the training, ~20-25 minutes in all.

``smoke`` trains two of the six models (plain max-pool, C4 APS: plain and group convolutions,
max-pool, the circular max + APS on group maps), one epoch on 256 digits; every run also builds
and traces all six architectures (``run._check_architectures``, no compile, < 5 s). Compiling
dominates a smoke run (~10-14 s CPU per trained model, train step and forward pass): training all
six took ~75 s of CPU time, three ~45 s, two ~30 s.
"""


from __future__ import annotations

import dataclasses
from typing import Literal

from experiments.common import ExperimentConfig

GROUPS = ("plain", "C4")
POOLS = ("max-pool", "MaxBlurPool", "APS")
MODELS = tuple(f"{g} {p}" for g in GROUPS for p in POOLS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(ExperimentConfig):
    n_train: int                 # the first n MNIST training digits
    n_test: int                  # the first n test digits (accuracy and consistency)
    epochs: int                  # Adam, constant learning rate, the same for all the models
    batch_size: int
    learning_rate: float
    width: int                   # plain: 16/32/32 channels; C4: 8/16/16 fields (14,794 vs 14,314 params)
    blur_filter_size: int        # MaxBlurPool's binomial filter
    max_shift: int               # APS protocol: shifts in [-max_shift, max_shift) per axis
    consistency_batch: int       # one random shift pair per batch of test digits
    consistency_repeats: int     # passes over the test set, fresh pairs each time
    n_exact_images: int          # digits checked under all 28*28 circular shifts
    models: tuple[str, ...]      # which of MODELS to train, all with the schedule above
    # the C4 networks' head: "group" = spatial mean, then a linear layer on all C x 4 (field,
    # rotation) channels (shift-invariant, rotation-equivariant features: trains as well as the
    # plain networks); "invariant" = mean over space and the rotations, then linear (also
    # invariant to quarter turns; 38-56 % against 84-92 % at 15,000 x 2 with running BN averages)
    c4_head: Literal["group", "invariant"] = "group"
    # batch-norm statistics from one pass over the training digits before measuring (the G-CNN
    # protocol's recalibration); False: the running averages of training
    bn_recalibration: bool = True

    def validate(self) -> None:
        self.require_positive("n_train", "n_test", "epochs", "batch_size", "width", "consistency_batch",
                              "consistency_repeats", "n_exact_images", "max_shift")
        if self.n_exact_images > self.n_test:
            raise ValueError(f"`n_exact_images` (={self.n_exact_images}) exceeds `n_test` (={self.n_test})")
        self.require_names("models", MODELS)


DEFAULT = Config(name="default", seed=0, n_train=30_000, n_test=2_000, epochs=3, batch_size=128, learning_rate=1e-3,
                 width=16, blur_filter_size=3, max_shift=3, consistency_batch=100,
                 consistency_repeats=2,  # 4,000 cases
                 n_exact_images=4, models=MODELS)
SMOKE = dataclasses.replace(DEFAULT, name="smoke", n_train=256, n_test=64, epochs=1, batch_size=64,
                            consistency_batch=32, consistency_repeats=1, n_exact_images=1,
                            models=("plain max-pool", "C4 APS"))

CONFIGS = {"default": DEFAULT, "smoke": SMOKE}
