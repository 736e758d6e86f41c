"""A sequential container that checks that its group layers agree on the group."""

from __future__ import annotations

from typing import Any

from flax import nnx

__all__ = ["Sequential"]


class Sequential(nnx.Sequential):
    """``nnx.Sequential`` that refuses layers built for different groups.

    Every layer with a ``group`` attribute (``LiftingConv``, ``GroupConv``, ``GroupBatchNorm``,
    ...) must use the group of the layers before it, until a layer whose ``ends_group_axis``
    attribute is true (``GroupPool``, ``GlobalPool``: their output has no group axis) ends the
    group part; a new one may start after it. A layer of your own takes part by defining the
    same attributes. The input size is not known here: see :func:`equilib.check_exact` for that.

    Args:
        *layers: modules or callables, applied in order.

    Raises:
        ValueError: two layers of one group part are built for different groups.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import nn
        >>> from equilib.groups import Cyclic
        >>> model = nn.Sequential(nn.LiftingConv(1, 4, 3, group=Cyclic(4), rngs=nnx.Rngs(0)),
        ...                       nn.GroupPool(), nn.LiftingConv(4, 2, 3, group=Cyclic(2), rngs=nnx.Rngs(1)))
        >>> model(jnp.ones((1, 9, 9, 1))).shape
        (1, 9, 9, 2, 2)
    """

    def __init__(self, *layers: Any):
        current, where = None, 0
        for i, layer in enumerate(layers):
            if getattr(layer, "ends_group_axis", False):
                current = None
                continue
            group = getattr(layer, "group", None)
            if group is None:
                continue
            if current is not None and group != current:
                raise ValueError(
                    f"layer {i} ({type(layer).__name__}) is built for group {group.name} but "
                    f"layer {where} ({type(layers[where]).__name__}) before it uses "
                    f"{current.name}: expected {current.name}, got {group.name}")
            current, where = group, i
        super().__init__(*layers)
