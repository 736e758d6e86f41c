"""The array types of equilib's signatures.

Annotations say what kind of value a function takes or gives; the shape and layout are given in
the ``Args:`` and ``Returns:`` of each docstring, in the channels-last conventions of the
documentation's "Conventions" page: plain maps ``(B, H, W, C)``, regular group maps ``(B, H, W, C, |G|)``,
scale maps ``(B, H, W, C, S)``, steerable fields ``(B, H, W, D)``.

* :data:`Array` for what equilib returns, and for the array inputs of the functional ops and
  layers: they read ``x.shape``/``x.dtype`` before any conversion, as ``flax.nnx`` layers
  annotate theirs ``Array`` (NumPy arrays work there at run time too). Host data (a mask, a
  basis) is annotated ``np.ndarray``.
* :data:`ArrayLike` for inputs that are converted first (anything ``jnp.asarray`` accepts:
  ``jax.Array``, NumPy arrays, scalars), as in the equivariance harness of ``equilib.testing``.
* :data:`DTypeLike` for ``dtype``/``param_dtype`` arguments, :data:`PRNGKey` for keys from
  ``jax.random.key`` (or the legacy ``PRNGKey``; both are ``jax.Array``).

Why not jaxtyping (``Float[Array, "b h w c g"]``): it would be a new runtime dependency of the
wheel, its shape strings are only checked with a runtime type checker installed (which equilib
does not use), and mypy reads them as plain ``jax.Array`` anyway. Shapes written in the
docstrings are read by people and shown on the documentation site.
"""

from __future__ import annotations

import jax
from jax.typing import ArrayLike, DTypeLike

__all__ = ["Array", "ArrayLike", "DTypeLike", "PRNGKey"]

#: A JAX array: what equilib's functions and layers return.
Array = jax.Array
#: A key for ``jax.random`` (a ``jax.Array``, typed or legacy ``uint32[2]``).
PRNGKey = jax.Array
