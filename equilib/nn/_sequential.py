"""A sequential container that checks that its group layers agree on the group."""

from __future__ import annotations

from flax import nnx

from equilib.nn._pool import GroupPool

__all__ = ["Sequential"]


class Sequential(nnx.Sequential):
    """``nnx.Sequential`` that refuses layers built for different groups.

    Every layer with a ``group`` attribute (``LiftingConv``, ``GroupConv``, ``GroupBatchNorm``,
    ...) must use the group of the layers before it, until a ``GroupPool`` ends the group part.
    The input size is not known here: see :func:`equilib.check_exact` for that.
    """

    def __init__(self, *layers):
        current, where = None, None
        for i, layer in enumerate(layers):
            if isinstance(layer, GroupPool):
                current, where = None, None
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
