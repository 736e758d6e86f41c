"""Configs of the segmentation experiment. ``default`` takes 30-60 minutes on 2 CPU cores (57
measured on a busy machine).

Canvases of 1-3 half-size MNIST digits, per-pixel labels (background or digit class, 6 and 9
merged), trained upright, tested rotated by every multiple of ``angle_step_degrees``.
"""

from __future__ import annotations

import dataclasses

from experiments.common import ExperimentConfig, ModelSpec

MODELS = ("plain U-Net", "plain U-Net + rotation augmentation", "C4 U-Net", "C8 steerable U-Net")


@dataclasses.dataclass(frozen=True, kw_only=True)
class UNetSpec(ModelSpec):
    """How one U-Net is built and trained: its fields per level (``UNet(width=...)``: each of
    ``|G|`` channels for the group models) and the :class:`ModelSpec` training keys."""

    width: tuple[int, ...]

    def validate(self) -> None:
        super().validate()
        if not self.width or min(self.width) < 1:
            raise ValueError(f"`width` must be positive field counts, one per level, got {self.width!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(ExperimentConfig):
    canvas: int                 # odd canvas side (pixels); exact for C4 when canvas = 2**depth * k + 1
    max_digits: int             # 1..max_digits digits per canvas
    n_train: int                # training canvases (built from MNIST training digits)
    n_test: int                 # test canvases (from MNIST test digits), each tested at every angle
    angle_step_degrees: int     # the sweep: 0, step, 2 step, ... < 360
    equivariance_canvases: int  # test canvases on which the output equivariance error is measured
    depth: int                  # stride-2 downsamplings of the U-Nets
    head_fields: int | None     # fields of the U-Nets' hidden 1x1 head block (None: a linear head)
    batch_size: int
    learning_rate: float        # Adam, constant
    models: dict[str, UNetSpec]  # model name (one of MODELS) -> how it is built and trained

    def validate(self) -> None:
        self.require_positive("canvas", "max_digits", "n_train", "n_test", "angle_step_degrees",
                              "equivariance_canvases", "depth", "batch_size")
        self.require_names("models", MODELS)
        if self.canvas % 2 == 0 or (self.canvas - 1) % 2 ** self.depth:
            raise ValueError(f"`canvas` must be 2**depth * k + 1 (odd at every level, so that every stride-2 layer "
                             f"samples symmetrically), got {self.canvas} with depth {self.depth}")
        for name, spec in self.models.items():
            if len(spec.width) != self.depth + 1:
                raise ValueError(f"`models.{name}.width` must hold depth + 1 = {self.depth + 1} field counts, "
                                 f"got {spec.width!r}")
        if 360 % self.angle_step_degrees:
            raise ValueError(f"`angle_step_degrees` must divide 360, got {self.angle_step_degrees}")


def _models(epochs: int, widths: tuple[tuple[int, ...], ...]) -> dict[str, UNetSpec]:
    return {name: UNetSpec(epochs=epochs, width=w) for name, w in zip(MODELS, widths, strict=True)}


# fields per level: with the 16-field head, 41,938 / 41,938 / 42,198 / 40,384 parameters (within
# 4 %; a regular field of C4 has 4 channels, one of C8 8, so the group models have fewer fields). The
# C8 model is steerable: regular C8 (and D4) U-Nets with 3x3 kernels did not fit even 64 training
# canvases at this budget (README), the steerable one did.
WIDTHS = ((8, 16, 32), (8, 16, 32), (4, 8, 16), (4, 7, 13))
DEFAULT = Config(name="default", seed=0, canvas=33, max_digits=3, n_train=20_000, n_test=2_000,
                 angle_step_degrees=15, equivariance_canvases=64, depth=2, head_fields=16, batch_size=32,
                 learning_rate=2e-3, models=_models(2, WIDTHS))
SMOKE = Config(name="smoke", seed=0, canvas=33, max_digits=3, n_train=64, n_test=32, angle_step_degrees=45,
               equivariance_canvases=4, depth=2, head_fields=4, batch_size=32, learning_rate=2e-3,
               models=_models(1, ((2, 4, 8), (2, 4, 8), (1, 2, 4), (1, 2, 3))))

CONFIGS = {"default": DEFAULT, "smoke": SMOKE}
