"""equilib: equivariant layers beyond translation, in JAX and Flax NNX.

Subpackages: :mod:`equilib.groups` (C_N, D_N, SO(2), O(2)), :mod:`equilib.reps` and
:mod:`equilib.fields` (representations, field types), :mod:`equilib.functional` (pure
functions), :mod:`equilib.nn` (Flax NNX modules), :mod:`equilib.linen` (Linen wrappers),
:mod:`equilib.testing` (the equivariance harness), :mod:`equilib.metrics`,
:mod:`equilib.data` and :mod:`equilib.transforms` (datasets, augmentation),
:mod:`equilib.models` (reference models) and :mod:`equilib.training` (the trainer); the last two
are imported on demand (``import equilib.models``).
"""

from equilib import functional, groups, linen, nn, testing
from equilib import data, transforms
from equilib import metrics
from equilib._exact import ExactnessWarning, check_exact
from equilib.groups import Cyclic, Dihedral, Group, Trivial
from equilib import fields, reps
from equilib.fields import FieldType
from equilib.groups import O2, SO2

__version__ = "0.1.0"

__all__ = [
    "FieldType",
    "O2",
    "SO2",
    "fields",
    "reps",
    "Cyclic",
    "Dihedral",
    "ExactnessWarning",
    "Group",
    "Trivial",
    "check_exact",
    "data",
    "functional",
    "groups",
    "linen",
    "metrics",
    "nn",
    "testing",
    "transforms",
]
