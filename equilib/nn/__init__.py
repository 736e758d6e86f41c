"""Flax NNX modules. They own parameters and call :mod:`equilib.functional`.

Layout is channels-last; channel counts count fields. Plain maps are ``(B, H, W, C)``,
regular group maps ``(B, H, W, C, |G|)`` (group axis last). Constructors take keyword-only
``rngs: nnx.Rngs`` where a module has parameters.
"""

from equilib.nn._conv import Conv, GroupConv, LiftingConv
from equilib.nn._dense import ConvTranspose, GroupConvTranspose, SteerableConvTranspose, Upsample
from equilib.nn._dropout import FieldDropout, GroupDropout, PointwiseDropout
from equilib.nn._heads import FieldLinear
from equilib.nn._layer_norm import FieldNorm, GroupNorm, LayerNorm
from equilib.nn._norm import GroupBatchNorm
from equilib.nn._pool import GroupPool
from equilib.nn._scale import ScaleConv, ScaleConv1x1, ScaleLiftingConv, ScalePool
from equilib.nn._sequential import Sequential
from equilib.nn._spatial_pool import APSPool, AvgPool, BlurPool, GlobalPool, MaxBlurPool, MaxPool
from equilib.nn._steerable import (
    FieldBatchNorm,
    FieldGroupPool,
    FieldSequential,
    FourierPointwise,
    GatedNonlinearity,
    NormNonlinearity,
    NormPool,
    PointwiseNonlinearity,
    Restrict,
    SteerableConv,
)
from equilib.nn._typed_pool import AdaptiveAvgPool, AdaptiveMaxPool, FieldMaxPool, NormMaxPool

__all__ = ["FieldBatchNorm", "FieldGroupPool", "FieldSequential", "FourierPointwise",
           "GatedNonlinearity", "NormNonlinearity", "NormPool", "PointwiseNonlinearity", "Restrict",
           "SteerableConv",
           "FieldLinear", "FieldNorm", "GroupNorm", "LayerNorm",
           "AdaptiveAvgPool", "AdaptiveMaxPool", "FieldMaxPool", "NormMaxPool",
           "FieldDropout", "GroupDropout", "PointwiseDropout",
           "APSPool", "AvgPool", "BlurPool", "GlobalPool", "MaxBlurPool", "MaxPool",
           "Conv", "GroupBatchNorm", "GroupConv", "GroupPool", "LiftingConv", "Sequential",
           "ScaleConv", "ScaleConv1x1", "ScaleLiftingConv", "ScalePool",
           "ConvTranspose", "GroupConvTranspose", "SteerableConvTranspose", "Upsample"]
