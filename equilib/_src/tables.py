"""Tables of a finite group derived from its Cayley table (shared by the planar and the 3D groups)."""

from __future__ import annotations

import numpy as np

__all__ = ["inverse_table", "regular_permutation_table"]


def inverse_table(cayley: np.ndarray) -> np.ndarray:
    """``inv[g]``: the index of ``g^-1`` (element 0 is the identity), read-only."""
    inv = np.argmax(cayley == 0, axis=1)
    inv.setflags(write=False)
    return inv


def regular_permutation_table(cayley: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """``perms[g, h] = index(g^-1 o h)``, read-only."""
    perms = cayley[inv, :]
    perms.setflags(write=False)
    return perms
