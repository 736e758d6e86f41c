"""Reference models with invariant heads: ``(B, H, W, C)`` images -> ``(B, num_classes)`` logits."""

from equilib.models._gcnn import GCNN, P4CNN, P4MCNN, Z2CNN, P4CNNRotationPooling
from equilib.models._steerable import SteerableCNN
from equilib.models._unet import UNet

__all__ = ["GCNN", "P4CNN", "P4CNNRotationPooling", "P4MCNN", "SteerableCNN", "UNet", "Z2CNN"]
