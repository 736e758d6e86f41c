"""The MNIST-rot models of Cohen & Welling (2016), "Group Equivariant Convolutional Networks".

As in the official experiment code (tscohen/gconv_experiments, MNIST_ROT/models): seven
convolutions without padding, 3x3 except a final 4x4, batch norm + ReLU after the first six,
a 2x2 max-pool after the second, and an invariant head: the maximum of the last layer over
space (and over rotations for the group models), giving ``(B, 10)`` logits from
``(B, 28, 28, 1)`` images. 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 6 -> 4 -> 1: every layer samples
symmetrically, so the P4 models are exactly invariant to rotations by 90 degrees.

=======================  ==========  ====================================================
model                    params      layers
=======================  ==========  ====================================================
``Z2CNN``                21,750      plain convs, 20 channels, dropout 0.3
``P4CNN``                24,680      LiftingConv + GroupConv over C4, 10 fields
``P4CNNRotationPooling`` 21,750      LiftingConv + max over rotations after every layer, 20
``P4MCNN``               26,799      as P4CNN over D4 (rotations and mirrors), 7 fields
=======================  ==========  ====================================================

The published counts (21,750 / 24,680 / 21,750) are matched exactly (tests/test_models.py).
Batch norm in the group models shares its statistics over the group axis, as the official
code does by normalising the 5-D (B, C, |G|, H, W) tensor per channel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from equilib import nn
from equilib.functional import max_pool
from equilib.groups import Cyclic, Dihedral, Group

__all__ = ["Z2CNN", "P4CNN", "P4CNNRotationPooling", "P4MCNN", "GCNN"]


def _check_images(x, in_channels: int):
    if x.ndim != 4 or x.shape[-1] != in_channels:
        raise ValueError(f"expected images of shape (batch, H, W, {in_channels}), got {tuple(x.shape)}")


class Z2CNN(nnx.Module):
    """The plain CNN baseline: 7 convs (20 channels), dropout 0.3, max over space. 21,750 params.

    ``(B, 28, 28, in_channels)`` images -> ``(B, num_classes)`` logits (larger images work
    too: the head takes the maximum over space). Call ``model.eval()`` before evaluating (batch norm
    running statistics, no dropout).

    Args:
        in_channels: channels ``C`` of the images.
        num_classes: the number of logits.
        width: channels of every hidden layer.
        dropout: the dropout rate after every layer but the one before the pool.
        rngs: the ``nnx.Rngs`` the parameters (and dropout) draw from.

    Raises:
        ValueError: on call, images that are not ``(B, H, W, in_channels)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import models
        >>> from equilib.training import count_params
        >>> count_params(models.Z2CNN(rngs=nnx.Rngs(0)))
        21750
        >>> model = models.Z2CNN(width=4, rngs=nnx.Rngs(0))
        >>> model.eval()
        >>> model(jnp.zeros((2, 28, 28, 1))).shape
        (2, 10)
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, width: int = 20,
                 dropout: float = 0.3, rngs: nnx.Rngs):
        self.in_channels = in_channels
        widths = [in_channels] + [width] * 6
        self.convs = nnx.List([nn.Conv(widths[i], widths[i + 1], 3, padding="VALID", rngs=rngs)
                               for i in range(6)])
        self.bns = nnx.List([nnx.BatchNorm(width, momentum=0.9, rngs=rngs) for _ in range(6)])
        self.top = nn.Conv(width, num_classes, 4, padding="VALID", rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        _check_images(x, self.in_channels)
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = jax.nn.relu(bn(conv(x)))
            if i == 1:
                x = max_pool(x, 2)
            if i != 1:  # the official code drops out after every layer but the one before the pool
                x = self.dropout(x)
        return jnp.max(self.top(x), axis=(1, 2))


class GCNN(nnx.Module):
    """The G-CNN of Cohen & Welling over any ``group``: a LiftingConv, five GroupConvs and a
    4x4 GroupConv, GroupBatchNorm + ReLU, max-pool after the second layer; logits are the
    maximum over space and the group axis, invariant under the group. ``P4CNN`` and ``P4MCNN``
    are instances.

    ``(B, 28, 28, in_channels)`` images -> ``(B, num_classes)`` logits; :meth:`features` gives
    the regular map before the head. Exactly invariant for C4, D4 and their subgroups on 28x28
    inputs (every layer samples symmetrically; see :func:`equilib.check_exact`).

    Args:
        group: a finite group (``Cyclic(n)``, ``Dihedral(n)``, ``Trivial()``).
        width: fields (each of ``|G|`` channels) of every hidden layer.
        in_channels: channels ``C`` of the images.
        num_classes: the number of logits.
        rngs: the ``nnx.Rngs`` the parameters are drawn from.

    Raises:
        TypeError: ``group`` is not a finite group.
        ValueError: on call, images that are not ``(B, H, W, in_channels)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, models
        >>> model = models.GCNN(Cyclic(2), width=2, rngs=nnx.Rngs(0))
        >>> model.eval()
        >>> x = jnp.zeros((2, 28, 28, 1))
        >>> model(x).shape, model.features(x).shape
        ((2, 10), (2, 1, 1, 10, 2))
    """

    def __init__(self, group: Group, *, width: int = 10, in_channels: int = 1, num_classes: int = 10,
                 rngs: nnx.Rngs):
        self.group, self.in_channels = group, in_channels
        self.lift = nn.LiftingConv(in_channels, width, 3, group=group, padding="VALID", rngs=rngs)
        self.convs = nnx.List([nn.GroupConv(width, width, 3, group=group, padding="VALID", rngs=rngs)
                               for _ in range(5)])
        self.bns = nnx.List([nn.GroupBatchNorm(width, group=group, momentum=0.9, rngs=rngs)
                             for _ in range(6)])
        self.top = nn.GroupConv(width, num_classes, 4, group=group, padding="VALID", rngs=rngs)

    def features(self, x):
        """The regular feature map before the head: ``(B, 1, 1, num_classes, |G|)`` for 28x28."""
        _check_images(x, self.in_channels)
        x = jax.nn.relu(self.bns[0](self.lift(x)))
        for i, conv in enumerate(self.convs):
            x = jax.nn.relu(self.bns[i + 1](conv(x)))
            if i == 0:
                x = max_pool(x, 2)
        return self.top(x)

    def __call__(self, x):
        return jnp.max(self.features(x), axis=(1, 2, 4))


class P4CNN(GCNN):
    """``GCNN`` over C4 with 10 fields: 24,680 params (Cohen & Welling's P4CNN).

    Args:
        width: fields of every hidden layer.
        in_channels: channels ``C`` of the images ``(B, H, W, C)``.
        num_classes: the number of logits.
        rngs: the ``nnx.Rngs`` the parameters are drawn from.

    Raises:
        ValueError: on call, images that are not ``(B, H, W, in_channels)``.

    Example:
        >>> from flax import nnx
        >>> from equilib import models
        >>> from equilib.training import count_params
        >>> model = models.P4CNN(rngs=nnx.Rngs(0))
        >>> model.group, count_params(model)
        (Cyclic(4), 24680)
    """

    def __init__(self, *, width: int = 10, in_channels: int = 1, num_classes: int = 10, rngs: nnx.Rngs):
        super().__init__(Cyclic(4), width=width, in_channels=in_channels, num_classes=num_classes, rngs=rngs)


class P4MCNN(GCNN):
    """``GCNN`` over D4 (rotations and mirrors) with 7 fields: 26,799 params, close to P4CNN's.

    Args:
        width, in_channels, num_classes, rngs: as in :class:`P4CNN`.

    Raises:
        ValueError: as :class:`P4CNN`.

    Example:
        A mirrored image gives the same logits (D4 contains the mirror):

        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib.models import P4MCNN
        >>> model = P4MCNN(rngs=nnx.Rngs(0))
        >>> model.eval()
        >>> import numpy as np
        >>> x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 28, 28, 1)), jnp.float32)
        >>> bool(jnp.allclose(model(x), model(x[:, :, ::-1]), atol=1e-4))
        True
    """

    def __init__(self, *, width: int = 7, in_channels: int = 1, num_classes: int = 10, rngs: nnx.Rngs):
        super().__init__(Dihedral(4), width=width, in_channels=in_channels, num_classes=num_classes, rngs=rngs)


class P4CNNRotationPooling(nnx.Module):
    """Cohen & Welling's P4CNN-RotationPooling: every layer is a C4 LiftingConv whose output
    is max-pooled over rotations at once (20 channels): invariant, 21,750 params.

    ``(B, 28, 28, in_channels)`` images -> ``(B, num_classes)`` logits, as :class:`Z2CNN`
    (same parameter count: each layer's filters are shared by the four rotations).

    Args:
        width: channels of every hidden layer.
        in_channels, num_classes, rngs: as in :class:`P4CNN`.

    Raises:
        ValueError: as :class:`P4CNN`.

    Example:
        >>> from flax import nnx
        >>> from equilib.models import P4CNNRotationPooling
        >>> from equilib.training import count_params
        >>> count_params(P4CNNRotationPooling(rngs=nnx.Rngs(0)))
        21750
    """

    def __init__(self, *, width: int = 20, in_channels: int = 1, num_classes: int = 10, rngs: nnx.Rngs):
        G = Cyclic(4)
        self.group, self.in_channels = G, in_channels
        widths = [in_channels] + [width] * 6
        self.convs = nnx.List([nn.LiftingConv(widths[i], widths[i + 1], 3, group=G, padding="VALID", rngs=rngs)
                               for i in range(6)])
        self.bns = nnx.List([nn.GroupBatchNorm(width, group=G, momentum=0.9, rngs=rngs) for _ in range(6)])
        self.top = nn.LiftingConv(width, num_classes, 4, group=G, padding="VALID", rngs=rngs)
        self.pool = nn.GroupPool("max")

    def __call__(self, x):
        _check_images(x, self.in_channels)
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = self.pool(jax.nn.relu(bn(conv(x))))
            if i == 1:
                x = max_pool(x, 2)
        return jnp.max(self.top(x), axis=(1, 2, 4))
