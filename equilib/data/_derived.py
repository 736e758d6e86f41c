"""MNIST-rot and MNIST-scale, regenerated from MNIST with a seed, cached as verified .npz files."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from equilib._src.files import atomic_write, resolve_dir
from equilib.data._mnist import MNIST_SHA256, mnist

__all__ = ["mnist_rot", "mnist_scale", "cache_dir", "stratified_split", "RECIPES"]

SPLITS = ("train", "val", "test")
SIZES = {"train": 10_000, "val": 2_000, "test": 50_000}

# Bump a version whenever the bytes a recipe produces change; it is part of the cache key.
RECIPES: dict[str, dict[str, Any]] = {
    "mnist_rot": {"version": 1, "transform": "rotate", "low": 0.0, "high": 2.0 * math.pi,
                  "interpolation": "bilinear", "stream": 0x524F54},   # "ROT"
    "mnist_scale": {"version": 1, "transform": "rescale", "low": 0.3, "high": 1.0,
                    "interpolation": "bicubic", "stream": 0x53434C},  # "SCL"
}


def cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where derived datasets are cached, as an absolute path.

    ``cache_dir`` if given, else ``$EQUILIB_CACHE_DIR``, else ``~/.cache/equilib``; a relative
    path is resolved against the current directory when this is called.

    Args:
      cache_dir: the cache folder, or None for the default.

    Returns:
      The absolute folder (created when something is first cached).

    Raises:
      TypeError: ``cache_dir`` is neither None nor a path.

    Example:
      >>> import os
      >>> from equilib.data import cache_dir
      >>> cache_dir("cache") == cache_dir(os.path.join(os.getcwd(), "cache"))
      True
    """
    return resolve_dir(cache_dir, argument="cache_dir", env="EQUILIB_CACHE_DIR", default="~/.cache/equilib")


def stratified_split(rng: np.random.Generator, labels: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    """Disjoint random index sets of the given ``sizes`` whose class proportions match ``labels``.

    Class ``c`` (``m_c`` of ``n`` items) gets ``floor(size * m_c / n)`` items in each split plus
    one more for the classes with the largest remainders (ties to the lower class), so each
    split's size is exact and every class count is within 1 of proportional.

    Args:
      rng: the numpy generator that draws the split.
      labels: ``(N,)`` class labels (any type ``numpy.unique`` sorts).
      sizes: the size of each split; ``sum(sizes)`` may be less than ``N``.

    Returns:
      One int index array per split, each in random order, disjoint.

    Raises:
      ValueError: a size is negative or the sizes add up to more than ``N``.

    Example:
      >>> import numpy as np
      >>> from equilib.data import stratified_split
      >>> labels = np.array([0] * 6 + [1] * 4)
      >>> a, b = stratified_split(np.random.default_rng(0), labels, [5, 5])
      >>> np.bincount(labels[a]).tolist(), np.bincount(labels[b]).tolist(), set(a) & set(b)
      ([3, 2], [3, 2], set())
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes) or sum(sizes) > n:
        raise ValueError(f"`sizes` must be non-negative and sum to at most {n}, got {sizes}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros((len(sizes), len(classes)), dtype=np.int64)
    left = counts.copy()
    for s, size in enumerate(sizes):
        exact = size * counts / n
        q = np.minimum(np.floor(exact).astype(np.int64), left)
        order = np.lexsort((np.arange(len(classes)), -(exact - q)))  # largest remainder first
        short = size - q.sum()
        for c in order:
            if short == 0:
                break
            if q[c] < left[c]:
                q[c] += 1
                short -= 1
        quota[s] = q
        left -= q
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for ci, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for s in range(len(sizes)):
            parts[s].append(members[start:start + quota[s, ci]])
            start += quota[s, ci]
    return [rng.permutation(np.concatenate(p)) for p in parts]


@functools.lru_cache(maxsize=None)
def _transform_fn(kind: str, method: str):
    import jax
    import jax.numpy as jnp

    from equilib.functional import rescale, rotate

    def one(img, p):
        if kind == "rotate":
            return rotate(img, p, axes=(0, 1))
        # rescale is linear and separable: out = A x A^T with A = rescale of the identity along
        # one axis (a size-1 second axis is sampled exactly). Same maths, ~8x faster than
        # vmapping rescale over images (float32 sums in another order: rare 1-level roundings).
        n = img.shape[0]
        a = rescale(jnp.eye(n, dtype=jnp.float32)[:, None, :], p, method=method, axes=(0, 1))[:, 0, :]
        hi = jax.lax.Precision.HIGHEST
        return jnp.matmul(jnp.matmul(a, img, precision=hi), a.T, precision=hi)

    def run(imgs, params):
        out = jax.vmap(one)(imgs.astype(jnp.float32), params)
        return jnp.clip(jnp.rint(out), 0, 255).astype(jnp.uint8)

    return jax.jit(run)


def _apply(kind: str, method: str, images: np.ndarray, params: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Transform ``images`` (N, 28, 28) uint8 by per-image ``params`` on the CPU in fixed-size
    chunks (one compilation; always the CPU, so the bytes do not depend on the accelerator)."""
    import jax

    fn = _transform_fn(kind, method)
    cpu = jax.devices("cpu")[0]
    out = np.empty_like(images)
    n = images.shape[0]
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        xs = np.zeros((chunk,) + images.shape[1:], np.uint8)
        ps = np.ones((chunk,), np.float32)
        xs[:stop - start], ps[:stop - start] = images[start:stop], params[start:stop]
        res = fn(jax.device_put(xs, cpu), jax.device_put(ps, cpu))
        out[start:stop] = np.asarray(res)[:stop - start]
    return out


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _meta(recipe: str, seed: int) -> dict:
    r = RECIPES[recipe]
    return {"recipe": recipe, "version": r["version"], "seed": seed, "low": r["low"], "high": r["high"],
            "interpolation": r["interpolation"], "sizes": SIZES, "source_sha256": MNIST_SHA256}


def _generate(recipe: str, seed: int, data_dir) -> dict:
    r = RECIPES[recipe]
    xtr, ytr = mnist("train", data_dir)
    xte, yte = mnist("test", data_dir)
    pool_x = np.concatenate([xtr, xte])
    pool_y = np.concatenate([ytr, yte])
    rng = np.random.default_rng(np.random.SeedSequence([seed, r["stream"]]))
    trainval, test = stratified_split(rng, pool_y, [SIZES["train"] + SIZES["val"], SIZES["test"]])
    train, val = (trainval[i] for i in stratified_split(rng, pool_y[trainval], [SIZES["train"], SIZES["val"]]))
    idx = {"train": train, "val": val, "test": test}
    order = np.concatenate([idx[s] for s in SPLITS])
    params = rng.uniform(r["low"], r["high"], size=order.shape[0])
    images = _apply(r["transform"], r["interpolation"], pool_x[order], params)
    out, start = {}, 0
    for s in SPLITS:
        stop = start + idx[s].shape[0]
        out[f"x_{s}"], out[f"y_{s}"] = images[start:stop], pool_y[idx[s]].astype(np.int32)
        start = stop
    return out


def _cache_path(recipe: str, seed: int, cache_dir_) -> Path:
    v = RECIPES[recipe]["version"]
    return cache_dir(cache_dir_) / recipe / f"{recipe}-v{v}-seed{seed}.npz"


def _read_cache(path: Path, meta: dict):
    """The cached arrays if ``path`` holds this recipe's data intact, else None (with a reason)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except Exception as e:  # noqa: BLE001 - any unreadable cache is regenerated
        return None, f"unreadable ({type(e).__name__}: {e})"
    digest = stored.pop("sha256", None)
    if stored != json.loads(json.dumps(meta)):
        return None, "metadata does not match the recipe"
    if digest != _digest(arrays):
        return None, "content hash mismatch"
    return arrays, None


def _write_cache(path: Path, arrays: dict, meta: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps({**meta, "sha256": _digest(arrays)})), **arrays)
    atomic_write(path, buf.getvalue())


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be a non-negative int, got {type(seed).__name__} ({seed!r})")
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed}")
    return int(seed)


def _derived(recipe: str, seed, data_dir, cache_dir_, cache: bool) -> dict:
    seed = _check_seed(seed)
    if not isinstance(cache, bool):
        raise TypeError(f"`cache` must be a bool, got {type(cache).__name__}")
    meta = _meta(recipe, seed)
    arrays = None
    if cache:
        path = _cache_path(recipe, seed, cache_dir_)
        if path.is_file():
            arrays, why = _read_cache(path, meta)
            if arrays is None:
                warnings.warn(f"{path}: cached {recipe} is {why}; regenerating it", RuntimeWarning, stacklevel=3)
    if arrays is None:
        arrays = _generate(recipe, seed, data_dir)
        if cache:
            _write_cache(path, arrays, meta)
    return {s: (arrays[f"x_{s}"], arrays[f"y_{s}"]) for s in SPLITS}


# The part of the two docstrings that is the same, appended to each below.
_CONTRACT = """
    Deterministic per ``seed``: the same seed gives identical bytes (generation runs on the CPU
    in float32, so the bytes depend only on the seed, the recipe version and, in principle, the
    XLA CPU backend); different seeds differ in split, order and transform.

    The result is cached as ``<cache_dir>/<recipe>/<recipe>-v<version>-seed<seed>.npz``, with
    metadata (recipe, version, seed, source hashes) and a SHA-256 of the arrays that are checked
    on load; a stale or damaged cache is regenerated with a ``RuntimeWarning``.

    Args:
      seed: any int >= 0.
      data_dir: where MNIST is (see :func:`equilib.data.mnist`; default
        ``$EQUILIB_DATA_DIR/mnist``, else ``~/.cache/equilib/mnist``, downloaded if missing).
      cache_dir: the cache folder (see :func:`equilib.data.cache_dir`; default
        ``$EQUILIB_CACHE_DIR``, else ``~/.cache/equilib``).
      cache: read and write the cache; False regenerates and writes nothing.

    Returns:
      ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` with 10,000 / 2,000 / 50,000
      examples; ``x`` uint8 ``(N, 28, 28)``, ``y`` int32 ``(N,)``.

    Raises:
      ValueError: ``seed`` is negative.
      TypeError: ``seed`` is not an int or ``cache`` not a bool.

    Example:
      Generating takes a few seconds and needs MNIST, so the doctest skips it.

      >>> from equilib.data import {name}
      >>> sets = {name}(seed=0)  # doctest: +SKIP
      >>> sets["train"][0].shape, sets["val"][0].shape, sets["test"][0].shape  # doctest: +SKIP
      ((10000, 28, 28), (2000, 28, 28), (50000, 28, 28))
      >>> {name}(seed=-1)
      Traceback (most recent call last):
        ...
      ValueError: `seed` must be a non-negative int, got -1
"""


def mnist_rot(seed: int = 0, *, data_dir: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, cache: bool = True) -> dict:
    """MNIST-rot (regenerated): MNIST digits rotated by angles ~ U[0, 2pi).

    Recipe (version 1), the protocol of Larochelle et al. (2007): pool the 70,000 MNIST train +
    test digits; a stratified random split draws 12,000 train+val and 50,000 test digits (8,000 are
    left out), then the 12,000 are split stratified into 10,000 train / 2,000 val; every digit is
    rotated counter-clockwise (as displayed) about the array centre by its own angle ~ U[0, 2pi),
    bilinear interpolation on the 28x28 canvas with zero fill (:func:`equilib.functional.rotate`),
    rounded to uint8.

    Not the bytes of Larochelle et al. (2007): same sizes and distribution of angles, but our own
    draw of the digits and angles and our interpolation; the stratified split is our choice
    (class counts within 1 of proportional). Call it "MNIST-rot (regenerated)" in tables.
    """
    return _derived("mnist_rot", seed, data_dir, cache_dir, cache)


def mnist_scale(seed: int = 0, *, data_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, cache: bool = True) -> dict:
    """MNIST-scale (SESN recipe, Sosnovik et al. 2020): MNIST digits shrunk by factors ~ U[0.3, 1].

    Recipe (version 1), as in the official ``prepare_datasets.py``: pool the 70,000 MNIST train +
    test digits; stratified split into 12,000 train+val / 50,000 test, then the 12,000 stratified
    into 10,000 train / 2,000 val; every digit is scaled about the centre by its own factor
    ~ U[0.3, 1.0] on the 28x28 canvas, bicubic (Keys, a = -0.5), zero fill, no anti-aliasing
    (:func:`equilib.functional.rescale`), rounded and clipped to uint8. The paper uses seeds 0..5.

    Differences from the official bytes (whose MD5s this cannot reproduce): the official script
    draws the splits with scikit-learn's ``train_test_split`` and the factors with Python's
    ``random`` through torchvision's ``RandomAffine`` + PIL bicubic (a = -0.5 too, but PIL's own
    arithmetic, about the centre as torchvision of 2020 defined it, which may sit half a pixel
    from ours); we use our own stratified split and a numpy ``Generator`` seeded by ``seed``.
    Same sizes, distribution of factors, interpolation kernel and split protocol.
    """
    return _derived("mnist_scale", seed, data_dir, cache_dir, cache)


for _fn in (mnist_rot, mnist_scale):
    if _fn.__doc__ is not None:  # None under python -OO
        _fn.__doc__ += _CONTRACT.replace("{name}", _fn.__name__)
del _fn
