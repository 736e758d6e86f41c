"""A steerable CNN for MNIST in the layout of the best E(2)-CNN MNIST models (Weiler & Cesa 2019).

Six steerable convolutions with kernels 9, 7, 7, 7, 7, 5 and regular-field widths
24, 32, 36, 36, 64, 96 (``width_scale`` scales them), inner batch norm + ELU after each, 3x3 /
stride 2 max-pools after the second and fourth (anti-aliasing omitted), group pooling, and a
96-96-10 MLP head. Inputs are ``(B, 29, 29, C)`` (MNIST padded to 29x29 by one row and
column, as in the e2cnn experiments, so that every stride-2 layer samples symmetrically:
29 -> 15 -> 8); the logits are invariant to the group's rotations by multiples of 90 degrees
exactly and approximately to the others.

With ``restrict_after`` (e.g. 3 for ``Dihedral(16)``), the first layers use the full group
and the rest its rotation subgroup (``Restrict``): the D16 -> C16 model of the paper.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from equilib import nn
from equilib.fields import FieldType
from equilib.functional import max_pool
from equilib.groups import Cyclic, Group
from equilib.reps import regular_rep, trivial_rep

__all__ = ["SteerableCNN"]


def _pool(x):
    # pointwise 3x3 / stride 2 max-pool: equivariant on regular fields (a permutation of channels)
    return max_pool(x, window=3, stride=2, padding="SAME")


class SteerableCNN(nnx.Module):
    """E(2)-CNN-style MNIST classifier over ``group`` (default C16): ``(B, 29, 29, C) -> (B, 10)``.

    Args:
        group: a finite group, C_N or D_N (for D_N with ``restrict_after``, see the module).
        width_scale: multiplies the widths 24, 32, 36, 36, 64, 96 (regular fields; at least 1).
        in_channels: channels ``C`` of the images (trivial fields).
        num_classes: the number of logits.
        restrict_after: None, or the layer (1..5) from which the rotation subgroup C_N is used.
        rngs: the ``nnx.Rngs`` the parameters are drawn from.

    Raises:
        ValueError: ``restrict_after`` out of range; on call, images that are not
            ``(B, H, W, in_channels)``.

    Example:
        The D4 -> C4 model: the layers from the fourth on use the rotations only.

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Dihedral, models
        >>> model = models.SteerableCNN(Dihedral(4), width_scale=0.1, restrict_after=3, rngs=nnx.Rngs(0))
        >>> restrict = model.body.layers[10]
        >>> restrict.in_type.group.name, restrict.out_type.group.name, model(jnp.zeros((2, 29, 29, 1))).shape
        ('D4', 'C4', (2, 10))
    """

    widths = (24, 32, 36, 36, 64, 96)
    kernels = (9, 7, 7, 7, 7, 5)

    def __init__(self, group: Group = Cyclic(16), *, width_scale: float = 1.0, in_channels: int = 1,  # noqa: B008
                 num_classes: int = 10, restrict_after: int | None = None, rngs: nnx.Rngs):
        if restrict_after is not None and not 0 < restrict_after < len(self.widths):
            raise ValueError(f"`restrict_after` must be in 1..{len(self.widths) - 1} or None, got {restrict_after!r}")
        self.in_channels = in_channels
        g = group
        ftype = FieldType(g, [trivial_rep(g)] * in_channels)
        self.in_type = ftype
        layers: list[Callable] = []
        for i, (w, k) in enumerate(zip(self.widths, self.kernels)):
            if restrict_after is not None and i == restrict_after:
                restrict = nn.Restrict(ftype, Cyclic(g.n))
                layers.append(restrict)
                g, ftype = restrict.subgroup, restrict.out_type
            out = FieldType(g, [regular_rep(g)] * max(1, round(w * width_scale)))
            layers.append(nn.SteerableConv(ftype, out, k, padding="SAME", rngs=rngs))
            layers.append(nn.FieldBatchNorm(out, rngs=rngs))
            layers.append(nn.PointwiseNonlinearity(out, "elu"))
            if i in (1, 3):
                layers.append(_pool)
            ftype = out
        self.body = nn.FieldSequential(*layers)
        self.gpool = nn.FieldGroupPool(ftype, "max")
        n = len(ftype)
        self.fc1 = nnx.Linear(n, 96, rngs=rngs)
        self.bn = nnx.BatchNorm(96, rngs=rngs)
        self.fc2 = nnx.Linear(96, num_classes, rngs=rngs)

    def __call__(self, x):
        if x.ndim != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"expected images of shape (batch, H, W, {self.in_channels}), got {tuple(x.shape)}")
        x = self.gpool(self.body(x))           # (B, H', W', fields), invariant fields
        x = jnp.max(x, axis=(1, 2))            # invariant vector
        x = jax.nn.elu(self.bn(self.fc1(x)))
        return self.fc2(x)
