"""MNIST: IDX reader, data-directory resolution, verified downloads with mirror fallback."""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from equilib._src.files import atomic_write, resolve_dir

__all__ = ["mnist", "download_mnist", "mnist_dir", "read_idx", "DownloadError", "MNIST_SHA256", "MNIST_MIRRORS"]

# SHA-256 of the DECOMPRESSED IDX files (the canonical bytes; gzip wrappers vary between mirrors).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Tried in order; each serves ``<mirror><name>.gz``.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX type codes -> numpy big-endian dtypes
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DownloadError(OSError):
    """No verified copy of a file could be obtained from any mirror (offline, or every copy was bad).

    An ``OSError``, so ``except OSError`` catches it with the other I/O failures; the message
    lists each mirror's failure and says where to put the files by hand.

    Example:
      >>> from equilib.data import DownloadError
      >>> issubclass(DownloadError, OSError)
      True
    """


def mnist_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the MNIST files, as an absolute path.

    ``data_dir`` if given, else ``$EQUILIB_DATA_DIR/mnist`` (the variable names a folder that
    *contains* ``mnist/``), else ``~/.cache/equilib/mnist``. A relative path, given or from the
    variable, is resolved against the current directory when this is called.

    Args:
      data_dir: the folder with the MNIST files, or None for the default.

    Returns:
      The absolute folder (it need not exist yet: :func:`download_mnist` creates it).

    Raises:
      TypeError: ``data_dir`` is neither None nor a path.

    Example:
      >>> import os
      >>> from equilib.data import mnist_dir
      >>> mnist_dir("my_data/mnist") == mnist_dir(os.path.join(os.getcwd(), "my_data", "mnist"))
      True
    """
    if data_dir is not None:
        return resolve_dir(data_dir, argument="data_dir", env="EQUILIB_DATA_DIR", default="~/.cache/equilib")
    return resolve_dir(None, argument="data_dir", env="EQUILIB_DATA_DIR", default="~/.cache/equilib") / "mnist"


def read_idx(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into a native-endian numpy array.

    Args:
      data: the whole file: 2 zero bytes, a type code (``0x08`` uint8, ... ``0x0E`` float64),
        the number of dimensions ``n``, ``n`` big-endian uint32 sizes, then the values.
      name: what to call the file in error messages.

    Returns:
      The array, of the shape and type the header gives, in native byte order.

    Raises:
      ValueError: naming ``name``, for a wrong magic number (the first two bytes must be zero,
        the third a known type code) or a size that does not match the header.

    Example:
      >>> from equilib.data import read_idx
      >>> read_idx(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 8, 9]))
      array([7, 8, 9], dtype=uint8)
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file (only {len(data)} bytes)")
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in _IDX_TYPES or ndim == 0:
        raise ValueError(f"{name}: not an IDX file: wrong magic number 0x{data[:4].hex()} "
                         f"(expected 0x0000TTNN with type TT in {sorted(hex(c) for c in _IDX_TYPES)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header ({len(data)} bytes, need {header})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{name}: IDX header says shape {shape} ({expected} bytes) but the file has "
                         f"{len(data)} bytes (truncated or corrupt)")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _gunzip(blob: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise ValueError(f"{name}: corrupt or truncated gzip data ({type(e).__name__}: {e})") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _where_to_put(directory: Path) -> str:
    files = ", ".join(f"{n}.gz" for n in MNIST_SHA256)
    return (f"put the MNIST files ({files}; gzipped or not) in {directory}, or pass `data_dir=`, "
            f"or set EQUILIB_DATA_DIR to a folder containing mnist/")


def _urlopen(url: str, timeout: float):  # module-level so tests can replace it
    import urllib.request

    return urllib.request.urlopen(url, timeout=timeout)


def _fetch(name: str, mirrors: Sequence[str], timeout: float) -> bytes:
    """Download ``name`` from the first mirror that serves bytes with the right hash.

    Returns the gzip bytes as served (their decompressed SHA-256 verified); raises DownloadError
    listing each mirror's failure.
    """
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        try:
            with _urlopen(url, timeout) as resp:
                blob = resp.read()
            raw = _gunzip(blob, url)
            got = _sha256(raw)
            if got != MNIST_SHA256[name]:
                raise ValueError(f"SHA-256 mismatch: expected {MNIST_SHA256[name]}, got {got}")
            return blob
        except Exception as e:  # noqa: BLE001 - every failure falls back to the next mirror
            failures.append(f"{url}: {type(e).__name__}: {e}")
    raise DownloadError(f"could not download {name}.gz: "
                        + ("; ".join(failures) if failures else "no mirrors given"))


def _local(directory: Path, name: str) -> Path | None:
    for p in (directory / name, directory / (name + ".gz")):
        if p.is_file():
            return p
    return None


def download_mnist(data_dir: str | os.PathLike | None = None, *, mirrors: Iterable[str] | None = None,
                   timeout: float = 60.0) -> Path:
    """Download the MNIST files missing from :func:`mnist_dir` and return that directory.

    Each file is fetched as ``<mirror><name>.gz`` from ``mirrors`` (default :data:`MNIST_MIRRORS`;
    any URL ``urllib`` opens, ``file://`` included), tried in order until one serves bytes whose
    decompressed SHA-256 matches :data:`MNIST_SHA256`. The verified gzip is written as
    ``<name>.gz`` atomically (temporary file + ``os.replace``): a failed or mismatching download
    never leaves a file behind. Files already there are kept (:func:`mnist` checks their hashes).

    Args:
      data_dir: the folder to fill (see :func:`mnist_dir`; default ``$EQUILIB_DATA_DIR/mnist``,
        else ``~/.cache/equilib/mnist``).
      mirrors: base URLs tried in order.
      timeout: seconds to wait for each connection.

    Returns:
      The folder, absolute, holding all four files.

    Raises:
      DownloadError: (an ``OSError``) a file could not be obtained from any mirror; the message
        says where to put the files by hand.
      TypeError: ``mirrors`` is not an iterable of strings, or ``data_dir`` not a path.

    Example:
      >>> import tempfile
      >>> from equilib.data import DownloadError, download_mnist
      >>> with tempfile.TemporaryDirectory() as d:  # no mirror: the error says what to do
      ...     try:
      ...         download_mnist(d, mirrors=[])
      ...     except DownloadError as e:
      ...         print("put the MNIST files" in str(e))
      True
    """
    directory = mnist_dir(data_dir)
    mirrors = tuple(MNIST_MIRRORS if mirrors is None else mirrors)
    if any(not isinstance(m, str) for m in mirrors):
        raise TypeError(f"`mirrors` must be an iterable of URL strings, got {mirrors!r}")
    for name in MNIST_SHA256:
        if _local(directory, name) is not None:
            continue
        try:
            blob = _fetch(name, mirrors, timeout)
        except DownloadError as e:
            raise DownloadError(f"MNIST file {name} is not in {directory} and {e}. Offline? "
                                + _where_to_put(directory)) from None
        atomic_write(directory / (name + ".gz"), blob)
    return directory


def _load(path: Path, name: str) -> np.ndarray:
    blob = path.read_bytes()
    raw = _gunzip(blob, str(path)) if path.suffix == ".gz" else blob
    arr = read_idx(raw, name=str(path))  # magic / size first: the clearer error for a wrong file
    got = _sha256(raw)
    if got != MNIST_SHA256[name]:
        raise ValueError(f"{path}: SHA-256 of the decompressed bytes is {got}, expected "
                         f"{MNIST_SHA256[name]}; delete the file to download it again")
    return arr


def mnist(split: str, data_dir: str | os.PathLike | None = None, *,
          download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split: ``(images, labels)``.

    Args:
      split: ``"train"`` (60,000 digits) or ``"test"`` (10,000).
      data_dir: folder with the IDX files (``<name>`` or ``<name>.gz``); default
        ``$EQUILIB_DATA_DIR/mnist``, else ``~/.cache/equilib/mnist`` (see :func:`mnist_dir`).
      download: fetch missing files with :func:`download_mnist`; if False a missing file raises
        ``FileNotFoundError`` saying where to put it.

    Returns:
      ``images``: uint8 ``(N, 28, 28)``, values 0..255, row index pointing down;
      ``labels``: int32 ``(N,)``, values 0..9.

    Raises:
      ValueError: ``split`` is not ``"train"`` or ``"test"``; or a file is damaged: every file's
        decompressed bytes are checked against :data:`MNIST_SHA256`, and a corrupt gzip, a
        wrong magic number or a hash mismatch is reported naming the file.
      FileNotFoundError: a file is missing and ``download`` is False.
      DownloadError: a file is missing and could not be downloaded.

    Example:
      The first two lines need the MNIST files (or the network), so the doctest skips them.

      >>> from equilib.data import mnist
      >>> x, y = mnist("test")  # doctest: +SKIP
      >>> x.shape, x.dtype, y[:5]  # doctest: +SKIP
      ((10000, 28, 28), dtype('uint8'), array([7, 2, 1, 0, 4], dtype=int32))
      >>> mnist("validation")
      Traceback (most recent call last):
        ...
      ValueError: `split` must be 'train' or 'test', got 'validation'
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}")
    directory = mnist_dir(data_dir)
    img_name, lbl_name = _SPLIT_FILES[split]
    paths = [_local(directory, n) for n in (img_name, lbl_name)]
    if any(p is None for p in paths):
        if not download:
            missing = [n for n, p in zip((img_name, lbl_name), paths) if p is None]
            raise FileNotFoundError(f"MNIST files {missing} not found in {directory} (download=False): "
                                    + _where_to_put(directory))
        download_mnist(directory)
        paths = [_local(directory, n) for n in (img_name, lbl_name)]
    img_path, lbl_path = paths
    if img_path is None or lbl_path is None:  # download_mnist returns only once every file is there
        raise FileNotFoundError(f"MNIST files missing from {directory} after downloading them")
    images = _load(img_path, img_name)
    labels = _load(lbl_path, lbl_name)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{img_path}: expected uint8 images (N, 28, 28), got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"{lbl_path}: expected {images.shape[0]} labels, got shape {labels.shape}")
    return np.ascontiguousarray(images), labels.astype(np.int32)
