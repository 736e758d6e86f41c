"""An equivariant U-Net for dense prediction: ``(B, H, W, C)`` images -> ``(B, H, W, num_classes)`` logits.

The classic encoder-decoder of Ronneberger et al. (2015), small, in three variants that share
one architecture (:class:`UNet`): plain convolutions (``Trivial()``), regular group
convolutions over C_N / D_N, and steerable convolutions over any group (C_N, D_N, SO(2), O(2)).
The per-pixel logits are invariant scalar fields: they rotate with the input image.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from equilib import nn
from equilib._src.checks import check_choice, check_positive_int
from equilib.fields import FieldType
from equilib.functional import upsample
from equilib.groups import Group, PlanarLieGroup, Trivial
from equilib.reps import bandlimited_regular_rep, regular_rep, trivial_rep

__all__ = ["UNet"]

UPSAMPLINGS = ("bilinear", "transpose")


@dataclasses.dataclass(frozen=True)
class _Image:
    """The input images (``channels`` plain channels): the first convolution lifts them."""

    channels: int


class _PlainKit:
    """Builds the layers of the plain U-Net; fields are channel counts."""

    field_axis = -1

    def __init__(self, momentum: float):
        self.momentum = momentum

    def image(self, channels: int) -> Any:
        return _Image(channels)

    def fields(self, n: int) -> Any:
        return n

    def cat(self, a: Any, b: Any) -> Any:
        return a + b

    def conv(self, a: Any, b: Any, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Module:
        n = a.channels if isinstance(a, _Image) else a
        return nn.Conv(n, b, k, stride=stride, padding="SAME", rngs=rngs)

    def transpose(self, a: Any, b: Any, rngs: nnx.Rngs) -> nnx.Module:
        return nn.ConvTranspose(a, b, 3, stride=2, padding="SAME", rngs=rngs)

    def norm(self, f: Any, rngs: nnx.Rngs) -> nnx.Module:
        return nnx.BatchNorm(f, momentum=self.momentum, rngs=rngs)

    def act(self, f: Any) -> nnx.Module | None:
        return None  # ReLU

    def head(self, f: Any, num_classes: int, pool: str, rngs: nnx.Rngs) -> list:
        return [nn.Conv(f, num_classes, 1, rngs=rngs)]


class _RegularKit(_PlainKit):
    """Regular group convolutions of a finite group; fields are field counts."""

    field_axis = -2

    def __init__(self, momentum: float, group: Group):
        super().__init__(momentum)
        self.group = group

    def conv(self, a: Any, b: Any, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Module:
        if isinstance(a, _Image):
            return nn.LiftingConv(a.channels, b, k, group=self.group, stride=stride, padding="SAME", rngs=rngs)
        return nn.GroupConv(a, b, k, group=self.group, stride=stride, padding="SAME", rngs=rngs)

    def transpose(self, a: Any, b: Any, rngs: nnx.Rngs) -> nnx.Module:
        return nn.GroupConvTranspose(a, b, 3, group=self.group, stride=2, padding="SAME", rngs=rngs)

    def norm(self, f: Any, rngs: nnx.Rngs) -> nnx.Module:
        return nn.GroupBatchNorm(f, group=self.group, momentum=self.momentum, rngs=rngs)

    def head(self, f: Any, num_classes: int, pool: str, rngs: nnx.Rngs) -> list:
        return [nn.GroupConv(f, num_classes, 1, group=self.group, rngs=rngs), nn.GroupPool(pool)]


class _SteerableKit(_PlainKit):
    """Steerable convolutions between field types: regular fields (finite groups) or band-limited
    regular fields (SO(2), O(2)); fields are :class:`FieldType` s."""

    def __init__(self, momentum: float, group: Any, max_frequency: int):
        super().__init__(momentum)
        self.group = group
        finite = not isinstance(group, PlanarLieGroup)
        self.rep = regular_rep(group) if finite else bandlimited_regular_rep(group, max_frequency)

    def image(self, channels: int) -> Any:
        return FieldType(self.group, [trivial_rep(self.group)] * channels)

    def fields(self, n: int) -> Any:
        return FieldType(self.group, [self.rep] * n)

    def conv(self, a: Any, b: Any, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Module:
        return nn.SteerableConv(a, b, k, stride=stride, padding="SAME", rngs=rngs)

    def transpose(self, a: Any, b: Any, rngs: nnx.Rngs) -> nnx.Module:
        return nn.SteerableConvTranspose(a, b, 3, stride=2, padding="SAME", rngs=rngs)

    def norm(self, f: Any, rngs: nnx.Rngs) -> nnx.Module:
        # "inner" needs fields that permute channels; band-limited ones take the "norm" kind
        kind = "inner" if f.is_permutation else "norm"
        return nn.FieldBatchNorm(f, kind=kind, momentum=self.momentum, rngs=rngs)

    def act(self, f: Any) -> nnx.Module | None:
        return nn.PointwiseNonlinearity(f, "relu") if f.is_permutation else nn.FourierPointwise(f, "relu")

    def head(self, f: Any, num_classes: int, pool: str, rngs: nnx.Rngs) -> list:
        # a 1x1 steerable conv to trivial fields: already invariant, no group pooling
        return [nn.SteerableConv(f, FieldType(self.group, [trivial_rep(self.group)] * num_classes), 1,
                                 rngs=rngs)]


class _Block(nnx.Module):
    """conv 3x3 (SAME, ``stride``) -> batch norm -> ReLU (or the steerable nonlinearity)."""

    def __init__(self, kit: _PlainKit, a: Any, b: Any, stride: int, rngs: nnx.Rngs, kernel_size: int = 3):
        self.conv = kit.conv(a, b, kernel_size, stride, rngs)
        self.norm = kit.norm(b, rngs)
        self.act = kit.act(b)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.norm(self.conv(x))
        return jax.nn.relu(x) if self.act is None else self.act(x)


def _stage(kit: _PlainKit, a: Any, b: Any, blocks: int, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([_Block(kit, a if i == 0 else b, b, 1, rngs) for i in range(blocks)])


def _kit(group: Any, steerable: bool, max_frequency: int, momentum: float) -> _PlainKit:
    if steerable:
        return _SteerableKit(momentum, group, max_frequency)
    if isinstance(group, PlanarLieGroup):
        raise ValueError(f"`group` {group.name} is continuous: its U-Net needs `steerable=True` "
                         f"(band-limited regular fields), got steerable=False")
    if not isinstance(group, Group):
        raise TypeError(f"`group` must be an equilib group (Trivial(), Cyclic(n), Dihedral(n), SO2(), O2()), "
                        f"got {type(group).__name__}")
    return _PlainKit(momentum) if group.order == 1 else _RegularKit(momentum, group)


def _level_fields(width: Any, depth: int) -> list[int]:
    """The fields ``F_0..F_depth`` of each level: ``width * 2**l``, or the ``depth + 1`` given."""
    if isinstance(width, (list, tuple)):
        if len(width) != depth + 1:
            raise ValueError(f"`width` must be an int or {depth + 1} field counts (one per level, depth={depth}), "
                             f"got {len(width)}: {tuple(width)}")
        return [check_positive_int(f"width[{i}]", w) for i, w in enumerate(width)]
    width = check_positive_int("width", width)
    return [width * 2**level for level in range(depth + 1)]


class UNet(nnx.Module):
    """A small U-Net, equivariant under ``group``: ``(B, H, W, in_channels) -> (B, H, W, num_classes)``.

    Architecture, with ``F_l = width * 2**l`` fields at level ``l = 0..depth``:

    * encoder: level 0 is ``blocks`` x (conv 3x3 SAME -> batch norm -> ReLU); each level
      ``l >= 1`` starts with the same block with a stride-2 conv (``F_{l-1} -> F_l``, halving
      the size: 65 -> 33 -> 17 -> 9), followed by ``blocks`` blocks;
    * decoder, for ``l = depth-1 .. 0``: upsample the coarser map to the size of the level-``l``
      skip (``upsampling="bilinear"``: :func:`equilib.functional.upsample` with
      ``align_corners=True``, which puts the coarse pixels on the stride-2 grid, 33 -> 65;
      ``"transpose"``: a stride-2 "SAME" transposed conv ``F_{l+1} -> F_l``, ``n -> 2n - 1``, for
      sizes ``2**depth * k + 1`` only), concatenate
      ``[skip, upsampled]`` along the field axis and apply ``blocks`` blocks (-> ``F_l``);
    * head: with ``head_fields=H``, a 1x1 block (conv ``F_0 -> H``, batch norm, ReLU); then a 1x1
      conv to ``num_classes`` and, for regular group models, pooling over the group axis
      (``group_pool``): invariant scalar fields per pixel.

    The head of a group model reads invariant features only: with mean pooling (or a steerable
    conv to trivial fields) its logits are linear in the ``F_0`` per-field means over the group,
    fewer numbers than the ``F_0 * |G|`` the last block computes. When ``F_0`` is small next to
    ``num_classes`` this is a bottleneck: a C4 U-Net with ``F_0 = 4`` and 10 classes could not even
    fit 64 training canvases of the ``segmentation`` experiment, while ``head_fields=16`` (or
    ``F_0 = 16``) fit them. Give group models ``head_fields`` (about ``num_classes`` or more) or a
    wide first level.

    Variants: ``Trivial()``: plain ``nn.Conv`` and ``nnx.BatchNorm`` (no rotation equivariance);
    ``Cyclic(n)``/``Dihedral(n)``: ``nn.LiftingConv`` then ``nn.GroupConv``, ``nn.GroupBatchNorm``
    and ``nn.GroupPool``, on regular maps ``(B, H, W, F, |G|)`` concatenated along ``F``;
    ``steerable=True`` (any group, SO(2)/O(2) included): ``nn.SteerableConv`` between field types
    of regular fields (finite groups) or ``bandlimited_regular_rep(group, max_frequency)`` fields
    (SO(2)/O(2)), ``nn.FieldBatchNorm`` and ``nn.PointwiseNonlinearity`` / ``nn.FourierPointwise``,
    a final 1x1 ``nn.SteerableConv`` to trivial fields.

    Exactness: for C4, D4 and their subgroups the model is exactly equivariant under quarter
    turns (and mirrors) on sizes where every stride-2 conv samples symmetrically, i.e. where the
    size stays odd down to the coarsest level: ``H, W = 2**depth * k + 1`` (65 or 33 for depth 3,
    17 for depth 2); :func:`equilib.check_exact` returns ``[]`` there and names the stride-2
    layer on other sizes (e.g. 64). Other rotations of C8, SO(2), ... are approximate.

    Parameter counts for the default widths (``width=8, depth=3, blocks=2``): plain 171,402;
    C4 regular 681,210; D4 regular 1,360,954 (a regular field has ``|G|`` channels, so the group
    models have ``|G|`` times the channels and about ``|G|`` times the parameters of the plain
    one).

    Args:
        group: ``Trivial()`` (plain), ``Cyclic(n)``, ``Dihedral(n)``, or with ``steerable=True``
            also ``SO2()``/``O2()``.
        in_channels: channels ``C`` of the images (trivial fields).
        num_classes: logits per pixel.
        width: fields at the finest level (``F_0``); they double per level. Or a sequence of
            ``depth + 1`` field counts ``(F_0, ..., F_depth)``, e.g. to match the parameter
            count of another model.
        depth: the number of stride-2 downsamplings.
        blocks: conv-norm-ReLU blocks per level and per decoder stage.
        steerable: build the steerable variant (field types, ``nn.SteerableConv``).
        upsampling: ``"bilinear"`` (aligned corners) or ``"transpose"`` (stride-2 transposed conv).
        group_pool: ``"mean"`` or ``"max"``: the pooling of the group axis in the regular head.
        head_fields: fields ``H`` of a hidden 1x1 block before the last conv (None: no hidden
            block, the last conv reads the decoder's ``F_0`` fields).
        max_frequency: the band limit ``L`` of the fields of SO(2)/O(2) (steerable only).
        momentum: the batch norms' momentum (0.9, as the reference models).
        rngs: the ``nnx.Rngs`` the parameters are drawn from.

    Raises:
        TypeError: ``group`` is not an equilib group (or a regular layer rejects it).
        ValueError: a bad argument (``upsampling``, ``group_pool``, a non-positive ``width``,
            ``depth``, ``blocks``..., a continuous group without ``steerable=True``); on call,
            images that are not ``(B, H, W, in_channels)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from equilib import Cyclic, Dihedral, Trivial, check_exact, models
        >>> from equilib.training import count_params
        >>> [count_params(models.UNet(g, rngs=nnx.Rngs(0))) for g in (Trivial(), Cyclic(4), Dihedral(4))]
        [171402, 681210, 1360954]
        >>> model = models.UNet(Cyclic(4), width=2, depth=2, rngs=nnx.Rngs(0))
        >>> model.eval()
        >>> model(jnp.zeros((1, 17, 17, 1))).shape
        (1, 17, 17, 2)
        >>> check_exact(model, (1, 17, 17, 1)), len(check_exact(model, (1, 16, 16, 1))) > 0
        ([], True)
    """

    def __init__(self, group: Any = Trivial(), *, in_channels: int = 1, num_classes: int = 2,  # noqa: B008
                 width: int | Sequence[int] = 8, depth: int = 3, blocks: int = 2, steerable: bool = False,
                 upsampling: str = "bilinear", group_pool: str = "mean", head_fields: int | None = None,
                 max_frequency: int = 2, momentum: float = 0.9, rngs: nnx.Rngs):
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.num_classes = check_positive_int("num_classes", num_classes)
        depth = check_positive_int("depth", depth)
        fields = _level_fields(width, depth)
        blocks = check_positive_int("blocks", blocks)
        self.upsampling = check_choice("upsampling", upsampling, UPSAMPLINGS)
        check_choice("group_pool", group_pool, ("mean", "max"))
        kit = _kit(group, bool(steerable), check_positive_int("max_frequency", max_frequency), momentum)
        self.group, self.steerable, self.depth = group, bool(steerable), depth
        self.field_axis = kit.field_axis
        widths = [kit.fields(f) for f in fields]
        self.down = nnx.List([_Block(kit, widths[level - 1], widths[level], 2, rngs) for level in range(1, depth + 1)])
        self.encoder = nnx.List([_stage(kit, kit.image(in_channels) if level == 0 else widths[level], widths[level],
                                        blocks, rngs) for level in range(depth + 1)])
        self.up = nnx.List([kit.transpose(widths[level + 1], widths[level], rngs) if upsampling == "transpose"
                            else None for level in range(depth)])
        up_fields = [widths[level] if upsampling == "transpose" else widths[level + 1] for level in range(depth)]
        self.decoder = nnx.List([_stage(kit, kit.cat(widths[level], up_fields[level]), widths[level], blocks, rngs)
                                 for level in range(depth)])
        hidden = []
        if head_fields is not None:
            hidden = [_Block(kit, widths[0], kit.fields(check_positive_int("head_fields", head_fields)), 1, rngs,
                             kernel_size=1)]
        last = widths[0] if head_fields is None else kit.fields(head_fields)
        self.head = nnx.List(hidden + kit.head(last, self.num_classes, group_pool, rngs))

    def _upsample(self, level: int, x: jax.Array, skip: jax.Array) -> jax.Array:
        up = self.up[level]
        if up is None:
            return upsample(x, size=tuple(skip.shape[1:3]), method="bilinear", align_corners=True)
        y = up(x)
        if y.shape[1:3] != skip.shape[1:3]:  # n -> 2n - 1: only odd sizes at every level
            raise ValueError(f"UNet: the transposed conv maps {tuple(x.shape[1:3])} to {tuple(y.shape[1:3])}, "
                             f"not the skip's size {tuple(skip.shape[1:3])}: with upsampling='transpose' "
                             f"`x` must be of size 2**depth * k + 1 (e.g. {2**self.depth * 4 + 1})")
        return y

    def __call__(self, x: jax.Array) -> jax.Array:
        if getattr(x, "ndim", None) != 4 or x.shape[-1] != self.in_channels:
            raise ValueError(f"UNet: `x` must be images of shape (batch, H, W, {self.in_channels}) "
                             f"(in_channels={self.in_channels}), got shape {tuple(getattr(x, 'shape', ()))}")
        skips = []
        for level, stage in enumerate(self.encoder):
            if level > 0:
                x = self.down[level - 1](x)
            for block in stage:
                x = block(x)
            skips.append(x)
        for level in reversed(range(self.depth)):
            skip = skips[level]
            x = jnp.concatenate([skip, self._upsample(level, x, skip)], axis=self.field_axis)
            for block in self.decoder[level]:
                x = block(x)
        for layer in self.head:
            x = layer(x)
        return x
