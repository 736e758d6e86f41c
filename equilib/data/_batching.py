"""A small mini-batch iterator over in-memory arrays.

Written here rather than taken from a package: MNIST-sized data fits in memory, and what we need
(a permutation per epoch from a JAX key, slicing, ``device_put``) is a few lines, whereas
grain / tf.data / torch DataLoader would add a heavy runtime dependency for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

__all__ = ["Batches", "epochs"]


class Batches:
    """Iterate over ``data`` in mini-batches of device arrays.

    Args:
      data: an array or a pytree of arrays (e.g. ``(x, y)`` or a dict), numpy or jax, all with the
        same leading size ``N``.
      batch_size: examples per batch (int >= 1).
      key: a JAX PRNG key; if given, the order is ``jax.random.permutation(key, N)`` (use a new
        key per epoch, e.g. ``jax.random.fold_in(key, epoch)``, or :func:`epochs`); if None the
        order is ``0..N-1``.
      drop_remainder: drop the last batch if it has fewer than ``batch_size`` examples (keeps
        shapes static under ``jit``).
      device: where to put the batches (default: JAX's default device).

    Iterating yields pytrees of the same structure as ``data`` whose leaves are jax arrays of
    shape ``(B, ...)``, ``B = batch_size`` except possibly for the last batch. Iterating twice
    gives the same batches. ``len()`` is the number of batches. Numpy data stay on the host and
    only the batches are copied to the device.

    Raises:
      ValueError: ``data`` holds no array, or arrays of different leading sizes; ``batch_size``
        is below 1.
      TypeError: ``batch_size`` is not an int or ``drop_remainder`` not a bool.

    Example:
      >>> import numpy as np
      >>> from equilib.data import Batches
      >>> x, y = np.zeros((10, 28, 28, 1), np.float32), np.arange(10)
      >>> batches = Batches((x, y), 4)
      >>> len(batches), [xb.shape[0] for xb, yb in batches]
      (3, [4, 4, 2])
    """

    def __init__(self, data: Any, batch_size: int, *, key=None, drop_remainder: bool = False, device=None):
        leaves = jax.tree_util.tree_leaves(data)
        if not leaves:
            raise ValueError("`data` must contain at least one array, got an empty pytree")
        sizes = {np.shape(a)[0] if np.ndim(a) else -1 for a in leaves}  # -1: a scalar, no leading axis
        if -1 in sizes or len(sizes) != 1:
            raise ValueError(f"every array in `data` needs the same leading size N, got leading sizes "
                             f"{[np.shape(a)[:1] for a in leaves]}")
        _check_count("batch_size", batch_size, 1)
        if not isinstance(drop_remainder, bool):
            raise TypeError(f"`drop_remainder` must be a bool, got {type(drop_remainder).__name__}")
        self.data = data
        self.n: int = sizes.pop()
        self.batch_size = int(batch_size)
        self.key = key
        self.drop_remainder = drop_remainder
        self.device = device

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_remainder else 0)

    def order(self) -> np.ndarray:
        """The example order of this epoch, int ``(N,)``."""
        if self.key is None:
            return np.arange(self.n)
        return np.asarray(jax.random.permutation(self.key, self.n))

    def __iter__(self) -> Iterator[Any]:
        order = self.order()
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = jax.tree_util.tree_map(lambda a, idx=idx: a[idx], self.data)
            yield jax.device_put(batch, self.device)


def epochs(data: Any, batch_size: int, num_epochs: int, *, key=None, drop_remainder: bool = False,
           device=None) -> Iterator[Batches]:
    """:class:`Batches` for ``num_epochs`` epochs, epoch ``e`` shuffled with ``jax.random.fold_in(key, e)``.

    Args:
      data: as for :class:`Batches`.
      batch_size: examples per batch (int >= 1).
      num_epochs: how many epochs (int >= 0).
      key: a JAX PRNG key; None: every epoch in the order ``0..N-1``.
      drop_remainder: drop each epoch's last, smaller batch.
      device: where to put the batches (default: JAX's default device).

    Returns:
      An iterator of ``num_epochs`` :class:`Batches`, one per epoch.

    Raises:
      ValueError: as :class:`Batches` (at once, not at the first epoch), or ``num_epochs`` < 0.
      TypeError: as :class:`Batches`, or ``num_epochs`` is not an int.

    Example:
      >>> import jax, numpy as np
      >>> from equilib.data import epochs
      >>> for batches in epochs(np.arange(6), 3, 2, key=jax.random.key(0)):
      ...     print(sorted(int(i) for b in batches for i in b))
      [0, 1, 2, 3, 4, 5]
      [0, 1, 2, 3, 4, 5]
    """
    _check_count("num_epochs", num_epochs, 0)
    Batches(data, batch_size, drop_remainder=drop_remainder)  # validate now, not at the first next()

    def gen():
        for e in range(int(num_epochs)):
            epoch_key = None if key is None else jax.random.fold_in(key, e)
            yield Batches(data, batch_size, key=epoch_key, drop_remainder=drop_remainder, device=device)

    return gen()


def _check_count(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int >= {minimum}, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value}")
