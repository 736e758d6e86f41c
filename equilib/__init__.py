"""equilib: equivariant layers beyond translation, in JAX and Flax NNX.

Subpackages, all reachable as attributes after ``import equilib``: :mod:`equilib.groups`
(C_N, D_N, SO(2), O(2)), :mod:`equilib.reps` and :mod:`equilib.fields` (representations, field
types), :mod:`equilib.functional` (pure functions), :mod:`equilib.nn` (Flax NNX modules),
:mod:`equilib.linen` (Linen wrappers), :mod:`equilib.testing` (the equivariance harness),
:mod:`equilib.metrics`, :mod:`equilib.data` and :mod:`equilib.transforms` (datasets,
augmentation), :mod:`equilib.models` (reference models) and :mod:`equilib.training` (the
trainer).
"""

# Before anything imports jax: XLA reads XLA_FLAGS when its first backend starts (see
# equilib/_src/xla_flags.py; EQUILIB_XLA_FLAGS=0 opts out).
from equilib._src.xla_flags import PerformanceWarning, configure_xla

XLA_SETUP = configure_xla()

# A process started by `python -m equilib.launch` (or with EQUILIB_DISTRIBUTED=1 on a cluster)
# joins its multi-process run here, before anything starts a backend (equilib/distributed.py).
from equilib.distributed import initialize_from_env

initialize_from_env()

# models and training are imported with the package, not on demand: they add < 0.1 s to the
# seconds jax and flax take (optax comes with flax; orbax, ~2 s, is imported only when a
# checkpoint is written).
from equilib import (
    data,
    distributed,
    fields,
    fields3d,
    functional,
    groups,
    groups3d,
    linen,
    metrics,
    models,
    nn,
    reps,
    testing,
    training,
    transforms,
)
from equilib._exact import ExactnessWarning, check_exact
from equilib._export import export
from equilib.fields import FieldType
from equilib.groups import O2, SO2, Cyclic, Dihedral, Group, Trivial
from equilib.groups3d import FullOctahedral, Octahedral

__version__ = "0.2.0.dev0"  # the package metadata reads it (pyproject.toml)

__all__ = [
    "Cyclic",
    "Dihedral",
    "ExactnessWarning",
    "PerformanceWarning",
    "FieldType",
    "FullOctahedral",
    "Group",
    "O2",
    "Octahedral",
    "SO2",
    "Trivial",
    "XLA_SETUP",
    "check_exact",
    "data",
    "distributed",
    "export",
    "fields",
    "fields3d",
    "functional",
    "groups",
    "groups3d",
    "linen",
    "metrics",
    "models",
    "nn",
    "reps",
    "testing",
    "training",
    "transforms",
]
