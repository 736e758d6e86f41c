"""equilib: equivariant layers beyond translation, in JAX and Flax NNX.

Subpackages: :mod:`equilib.groups` (C_N, D_N), :mod:`equilib.functional` (pure functions),
:mod:`equilib.nn` (NNX modules), :mod:`equilib.linen` (Linen wrappers),
:mod:`equilib.testing` (the equivariance harness).
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
