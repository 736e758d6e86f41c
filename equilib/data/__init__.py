"""Datasets: MNIST (verified downloads) and the derived MNIST-rot and MNIST-scale, 3D Tetris volumes,
plus a batch iterator.

* :func:`mnist` reads the IDX files from ``data_dir``, else ``$EQUILIB_DATA_DIR/mnist``, else
  ``~/.cache/equilib/mnist``, downloading them (mirrors with fallback, SHA-256 checked, atomic
  writes) if missing.
* :func:`mnist_rot` / :func:`mnist_scale` regenerate the benchmark datasets from MNIST with a seed
  and cache them under ``$EQUILIB_CACHE_DIR`` (else ``~/.cache/equilib``).
* :func:`mnist_dir` / :func:`cache_dir` say which folders those are; a relative path, given or
  from the environment, is resolved against the current directory when they are called.
* :func:`polycubes` renders the eight 3D-Tetris tetracubes (a chiral pair among them) as small
  volumes ``(N, D, H, W, 1)`` at random sizes and positions, generated from a seed.
* :class:`Batches` / :func:`epochs` iterate over arrays in (shuffled) mini-batches of device arrays.

Images are uint8 ``(N, 28, 28)`` (add a channel axis for the layers: ``x[..., None]``), labels int32.
"""

from equilib.data._batching import Batches, epochs
from equilib.data._derived import cache_dir, mnist_rot, mnist_scale, stratified_split
from equilib.data._mnist import (
    MNIST_MIRRORS,
    MNIST_SHA256,
    DownloadError,
    download_mnist,
    mnist,
    mnist_dir,
    read_idx,
)
from equilib.data._polycubes import CHIRAL_PAIR, POLYCUBE_SHAPES, polycubes

__all__ = [
    "CHIRAL_PAIR",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "POLYCUBE_SHAPES",
    "Batches",
    "DownloadError",
    "cache_dir",
    "download_mnist",
    "epochs",
    "mnist",
    "mnist_dir",
    "mnist_rot",
    "mnist_scale",
    "polycubes",
    "read_idx",
    "stratified_split",
]
