"""equilib.data: IDX loader, verified downloads (fake local mirrors, never the network),
MNIST-rot / MNIST-scale regeneration and caching, the batch iterator."""

import gzip
import hashlib
import json
import os
import urllib.error
from pathlib import Path

import jax
import numpy as np
import pytest

from equilib import data
from equilib.data import _mnist

NAMES = tuple(_mnist.MNIST_SHA256)
REAL_DIR = data.mnist_dir()  # $EQUILIB_DATA_DIR/mnist (absolute, even if the variable is not), else ~/.cache/...
HAVE_MNIST = all((REAL_DIR / (n + ".gz")).is_file() or (REAL_DIR / n).is_file() for n in NAMES)
needs_mnist = pytest.mark.skipif(
    not HAVE_MNIST, reason=f"real MNIST not found in {REAL_DIR} (set EQUILIB_DATA_DIR to the folder "
                           f"holding mnist/; CI uses ../shared/data)")

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    """Never write derived datasets to the user's cache."""
    monkeypatch.setenv("EQUILIB_CACHE_DIR", str(tmp_path / "equilib-cache"))


# --- tiny IDX files the tests write themselves ---------------------------------------------------
def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return header + arr.astype(">u1").tobytes()


@pytest.fixture
def tiny(monkeypatch):
    """Raw IDX bytes of a 6-digit 'MNIST' (both splits), registered as the expected hashes."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 3, 4, 5], np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([7, 8, 9], np.uint8),
    }
    raw = {n: idx_bytes(a) for n, a in arrays.items()}
    for n, b in raw.items():
        monkeypatch.setitem(_mnist.MNIST_SHA256, n, hashlib.sha256(b).hexdigest())
    return arrays, raw


def write_dir(directory: Path, raw: dict, gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for n, b in raw.items():
        if gz:
            (directory / (n + ".gz")).write_bytes(gzip.compress(b, mtime=0))
        else:
            (directory / n).write_bytes(b)
    return directory


@pytest.mark.parametrize("gz", [True, False])
def test_reads_tiny_idx_gz_or_raw(tmp_path, tiny, gz):
    arrays, raw = tiny
    d = write_dir(tmp_path / "m", raw, gz=gz)
    x, y = data.mnist("train", d, download=False)
    assert x.dtype == np.uint8 and x.shape == (6, 28, 28) and y.dtype == np.int32
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4, 5])
    x, y = data.mnist("test", str(d), download=False)
    assert x.shape == (3, 28, 28) and list(y) == [7, 8, 9]


def test_split_and_data_dir_are_validated(tmp_path):
    with pytest.raises(ValueError, match=r"`split` must be 'train' or 'test', got 'val'"):
        data.mnist("val", tmp_path)
    with pytest.raises(TypeError, match="`data_dir` must be a path"):
        data.mnist("train", 3)


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUILIB_DATA_DIR", str(tmp_path / "env"))
    assert data.mnist_dir() == tmp_path / "env" / "mnist"
    assert data.mnist_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("EQUILIB_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.mnist_dir() == tmp_path / "home" / ".cache" / "equilib" / "mnist"


def test_relative_dirs_are_resolved_against_the_current_directory(tmp_path, monkeypatch):
    # the README's command sets EQUILIB_DATA_DIR=../shared/data: a relative path
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("EQUILIB_DATA_DIR", "../shared/data")
    monkeypatch.setenv("EQUILIB_CACHE_DIR", "cache")
    assert data.mnist_dir() == tmp_path / "shared" / "data" / "mnist"
    assert data.mnist_dir("m") == tmp_path / "work" / "m"
    assert data.cache_dir() == tmp_path / "work" / "cache"
    assert data.cache_dir("../c") == tmp_path / "c"
    for d in (data.mnist_dir(), data.mnist_dir("m"), data.cache_dir()):
        assert d.is_absolute() and d.as_uri().startswith("file:///")  # a mirror URL can be made from it
    # resolved when called: a later chdir does not move a folder already resolved
    resolved = data.mnist_dir()
    monkeypatch.chdir(tmp_path)
    assert resolved == tmp_path / "shared" / "data" / "mnist"
    assert data.mnist_dir() == tmp_path.parent / "shared" / "data" / "mnist"


def test_relative_data_dir_downloads_and_loads(tmp_path, tiny, monkeypatch):
    arrays, raw = tiny
    write_dir(tmp_path / "src", raw)
    monkeypatch.chdir(tmp_path)
    assert data.download_mnist("target", mirrors=[mirror(tmp_path / "src")]) == tmp_path / "target"
    monkeypatch.setenv("EQUILIB_DATA_DIR", ".")
    write_dir(tmp_path / "mnist", raw)
    x, y = data.mnist("test", download=False)
    np.testing.assert_array_equal(x, arrays["t10k-images-idx3-ubyte"])
    x, y = data.mnist("train", "target", download=False)
    np.testing.assert_array_equal(y, [0, 1, 2, 3, 4, 5])


@needs_mnist
def test_real_mnist_through_a_relative_data_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EQUILIB_DATA_DIR", os.path.relpath(REAL_DIR.parent, tmp_path))
    assert data.mnist_dir() == REAL_DIR
    x, y = data.mnist("test", download=False)
    assert x.shape == (10000, 28, 28) and np.bincount(y).tolist() == TEST_COUNTS


def test_wrong_magic_raises(tmp_path, tiny):
    _, raw = tiny
    bad = dict(raw)
    bad["train-images-idx3-ubyte"] = b"\x00\x00\x07\x03" + raw["train-images-idx3-ubyte"][4:]  # unknown type
    d = write_dir(tmp_path / "m", bad)
    with pytest.raises(ValueError, match="wrong magic number 0x00000703"):
        data.mnist("train", d, download=False)
    with pytest.raises(ValueError, match="wrong magic number"):
        data.read_idx(b"\x1f\x8b\x08\x00" + b"\x00" * 20)  # a gzip header read as IDX


def test_truncated_or_corrupt_gz_raises(tmp_path, tiny):
    _, raw = tiny
    d = write_dir(tmp_path / "m", raw)
    path = d / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip"):
        data.mnist("train", d, download=False)
    corrupt = bytearray(blob)
    corrupt[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="corrupt or truncated gzip|SHA-256"):
        data.mnist("train", d, download=False)


def test_truncated_idx_and_local_hash_mismatch(tmp_path, tiny):
    _, raw = tiny
    bad = dict(raw)
    bad["train-labels-idx1-ubyte"] = raw["train-labels-idx1-ubyte"][:-1]
    d = write_dir(tmp_path / "m", bad, gz=False)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.mnist("train", d, download=False)
    bad["train-labels-idx1-ubyte"] = raw["train-labels-idx1-ubyte"][:-1] + b"\x09"  # well-formed, wrong
    d = write_dir(tmp_path / "m2", bad, gz=False)
    with pytest.raises(ValueError, match="SHA-256 of the decompressed bytes"):
        data.mnist("train", d, download=False)


# --- downloads from fake local mirrors --------------------------------------------------------
def mirror(directory: Path) -> str:
    return directory.as_uri() + "/"


def test_download_with_fallback_and_atomic_files(tmp_path, tiny):
    arrays, raw = tiny
    good = write_dir(tmp_path / "good", raw)
    target = tmp_path / "target"
    out = data.download_mnist(target, mirrors=[mirror(tmp_path / "missing"), mirror(good)])
    assert out == target
    assert sorted(p.name for p in target.iterdir()) == sorted(n + ".gz" for n in NAMES)  # no temp files
    x, y = data.mnist("train", target, download=False)
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte"])
    # mnist() downloads what is missing: removing one file brings it back
    (target / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_mnist, "MNIST_MIRRORS", (mirror(good),))
        assert list(data.mnist("test", target)[1]) == [7, 8, 9]


@pytest.mark.parametrize("damage", ["hash", "truncated_gz"])
def test_bad_download_raises_and_leaves_no_file(tmp_path, tiny, damage):
    _, raw = tiny
    bad = dict(raw)
    name = "train-images-idx3-ubyte"
    if damage == "hash":
        bad[name] = raw[name][:-1] + bytes([raw[name][-1] ^ 1])  # valid gzip, valid IDX, wrong bytes
    src = write_dir(tmp_path / "src", bad)
    if damage == "truncated_gz":
        p = src / (name + ".gz")
        p.write_bytes(p.read_bytes()[:-20])
    target = tmp_path / "target"
    with pytest.raises(data.DownloadError, match="SHA-256 mismatch" if damage == "hash" else "gzip") as e:
        data.download_mnist(target, mirrors=[mirror(src)])
    assert str(target) in str(e.value)
    assert not (target / (name + ".gz")).exists()
    assert not target.exists() or not [p for p in target.iterdir() if p.name.startswith(".")]  # no temp file


def test_failed_write_leaves_no_file(tmp_path, tiny, monkeypatch):
    _, raw = tiny
    src = write_dir(tmp_path / "src", raw)
    target = tmp_path / "target"

    def broken_replace(a, b):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(_mnist.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        data.download_mnist(target, mirrors=[mirror(src)])
    assert list(target.iterdir()) == []


def test_offline_without_data_gives_one_clear_error(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("network is unreachable (simulated)")

    monkeypatch.setattr(_mnist, "_urlopen", offline)
    target = tmp_path / "nowhere"
    with pytest.raises(data.DownloadError) as e:
        data.mnist("train", target)
    msg = str(e.value)
    assert "put the MNIST files" in msg and str(target) in msg and "train-images-idx3-ubyte.gz" in msg
    assert "unreachable" in msg
    assert not target.exists() or list(target.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="download=False.*put the MNIST files"):
        data.mnist("test", target, download=False)


@needs_mnist
def test_download_of_the_real_files_verifies_the_published_hashes(tmp_path):
    target = data.download_mnist(tmp_path / "m", mirrors=[mirror(tmp_path / "down"), mirror(REAL_DIR)])
    x, y = data.mnist("test", target, download=False)
    assert x.shape == (10000, 28, 28) and np.bincount(y).tolist() == TEST_COUNTS


@needs_mnist
def test_real_mnist():
    x, y = data.mnist("train")  # EQUILIB_DATA_DIR
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int32
    assert np.bincount(y).tolist() == TRAIN_COUNTS
    assert abs(x.mean() / 255 - 0.1307) < 1e-4 and abs((x / 255).std() - 0.3081) < 1e-4
    x, y = data.mnist("test")
    assert x.shape == (10000, 28, 28) and np.bincount(y).tolist() == TEST_COUNTS


# --- derived datasets --------------------------------------------------------------------------
def test_stratified_split():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), [50, 70, 60, 40, 80, 30, 90, 20, 25, 35])
    a, b = data.stratified_split(rng, labels, [100, 300])
    assert len(a) == 100 and len(b) == 300 and not set(a) & set(b)
    n = len(labels)
    for part, size in ((a, 100), (b, 300)):
        counts = np.bincount(labels[part], minlength=10)
        assert np.all(np.abs(counts - size * np.bincount(labels) / n) < 1)
    assert not np.all(np.diff(a) > 0)  # shuffled, not sorted
    with pytest.raises(ValueError, match="`sizes`"):
        data.stratified_split(rng, labels, [400, 200])


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """Both recipes at seed 0 through a fresh cache (so generation and caching run once)."""
    cache = tmp_path_factory.mktemp("cache")
    return cache, {"mnist_rot": data.mnist_rot(0, cache_dir=cache),
                   "mnist_scale": data.mnist_scale(0, cache_dir=cache)}


RECIPES = ["mnist_rot", "mnist_scale"]


@needs_mnist
@pytest.mark.parametrize("recipe", RECIPES)
def test_derived_sizes_dtypes_and_label_balance(derived, recipe):
    _, sets = derived
    d = sets[recipe]
    assert list(d) == ["train", "val", "test"]
    pool = np.add(TRAIN_COUNTS, TEST_COUNTS) / 70000
    for split, n in (("train", 10000), ("val", 2000), ("test", 50000)):
        x, y = d[split]
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8 and y.shape == (n,) and y.dtype == np.int32
        counts = np.bincount(y, minlength=10)
        assert np.all(np.abs(counts - n * pool) < 1), (split, counts)  # stratified
        assert not np.all(np.diff(y) >= 0)  # shuffled


@needs_mnist
@pytest.mark.parametrize("recipe", RECIPES)
def test_derived_deterministic_per_seed_and_cached(derived, recipe, monkeypatch, tmp_path):
    cache, sets = derived
    fn = getattr(data, recipe)
    again = fn(0, cache=False)  # regenerated from scratch
    cached = fn(0, cache_dir=cache)  # read back from the cache
    other = fn(1, cache=False)
    for split in ("train", "val", "test"):
        for i in range(2):
            assert sets[recipe][split][i].tobytes() == again[split][i].tobytes()
            assert sets[recipe][split][i].tobytes() == cached[split][i].tobytes()
        assert not np.array_equal(sets[recipe][split][0], other[split][0])
    files = list((cache / recipe).iterdir())
    assert [f.name for f in files] == [f"{recipe}-v1-seed0.npz"]
    # the default cache location is $EQUILIB_CACHE_DIR, never the repo or the package
    monkeypatch.setenv("EQUILIB_CACHE_DIR", str(tmp_path))
    assert data.cache_dir() == tmp_path
    with pytest.raises(ValueError, match="`seed` must be a non-negative int, got -1"):
        fn(-1)
    with pytest.raises(TypeError, match="`seed` must be a non-negative int, got float"):
        fn(0.5)


@needs_mnist
def test_damaged_or_tampered_cache_is_regenerated(derived, tmp_path):
    cache, sets = derived
    ref = sets["mnist_scale"]
    path = tmp_path / "mnist_scale" / "mnist_scale-v1-seed0.npz"
    path.parent.mkdir()
    src = cache / "mnist_scale" / path.name
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["x_val"] = arrays["x_val"].copy()
    arrays["x_val"][0, 14, 14] ^= 1  # a one-bit change, metadata untouched
    with path.open("wb") as f:
        np.savez(f, **arrays)
    with pytest.warns(RuntimeWarning, match="content hash mismatch"):
        out = data.mnist_scale(0, cache_dir=tmp_path)
    assert out["val"][0].tobytes() == ref["val"][0].tobytes()
    meta = json.loads(str(arrays["meta"]))
    assert meta["recipe"] == "mnist_scale" and meta["version"] == 1 and meta["seed"] == 0
    assert path.read_bytes() == src.read_bytes()  # rewritten intact
    # a truncated file or other metadata are refused too (checked without regenerating)
    from equilib.data._derived import _meta, _read_cache

    assert _read_cache(src, _meta("mnist_scale", 0))[1] is None
    assert _read_cache(src, _meta("mnist_scale", 1))[1] == "metadata does not match the recipe"
    path.write_bytes(src.read_bytes()[:1000])
    assert _read_cache(path, _meta("mnist_scale", 0))[1].startswith("unreadable")


@needs_mnist
def test_derived_content_follows_the_recipe(derived):
    _, sets = derived
    source_mean = 0.1307 * 255  # MNIST train pixel mean
    rot = np.mean([sets["mnist_rot"][s][0].mean() for s in ("train", "test")])
    scale = np.mean([sets["mnist_scale"][s][0].mean() for s in ("train", "test")])
    # rotation keeps the ink (measured ratio 1.002); scaling by f keeps f^2 of it:
    # E[f^2] for f ~ U[0.3, 1] is (1 - 0.027) / (3 * 0.7) = 0.463 (measured 0.468)
    assert 0.98 < rot / source_mean < 1.02
    assert 0.44 < scale / source_mean < 0.49
    # the mean MNIST digit is upright, far from invariant under a quarter turn (relative change
    # 0.60); the mean MNIST-rot digit is nearly invariant (0.007)
    def quarter_turn_change(m):
        return np.abs(m - np.rot90(m)).mean() / m.mean()

    assert quarter_turn_change(data.mnist("test")[0].mean(0)) > 0.5
    assert quarter_turn_change(sets["mnist_rot"]["test"][0].mean(0)) < 0.03


# --- batches -----------------------------------------------------------------------------------
def test_batches_order_sizes_and_structure():
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    y = np.arange(10, dtype=np.int32)
    b = data.Batches({"x": x, "y": y}, 4)
    assert len(b) == 3
    got = list(b)
    assert [g["y"].shape[0] for g in got] == [4, 4, 2]
    assert isinstance(got[0]["x"], jax.Array)
    np.testing.assert_array_equal(np.concatenate([g["y"] for g in got]), y)  # unshuffled: in order
    b = data.Batches((x, y), 4, key=jax.random.key(0), drop_remainder=True)
    assert len(b) == 2
    first = [np.asarray(yb) for _, yb in b]
    assert [a.shape for a in first] == [(4,), (4,)]
    second = [np.asarray(yb) for _, yb in b]
    np.testing.assert_array_equal(first, second)  # iterating twice: same order
    for xb, yb in b:
        np.testing.assert_array_equal(xb, x[np.asarray(yb)])  # x and y stay aligned


def test_epochs_shuffle_differently_and_cover_everything():
    y = np.arange(100)
    orders = [np.concatenate([np.asarray(b) for b in batches])
              for batches in data.epochs(y, 32, 3, key=jax.random.key(1))]
    assert len(orders) == 3
    for o in orders:
        np.testing.assert_array_equal(np.sort(o), y)  # a permutation: each example once per epoch
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    again = [np.concatenate([np.asarray(b) for b in batches])
             for batches in data.epochs(y, 32, 3, key=jax.random.key(1))]
    np.testing.assert_array_equal(orders, again)


def test_batches_validate_arguments():
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1, got 0"):
        data.Batches(np.zeros(3), 0)
    with pytest.raises(ValueError, match="same leading size"):
        data.Batches((np.zeros(3), np.zeros(4)), 2)
    with pytest.raises(TypeError, match="`batch_size` must be an int >= 1, got float"):
        data.Batches(np.zeros(3), 2.0)
    with pytest.raises(ValueError, match="`num_epochs` must be an int >= 0, got -1"):
        data.epochs(np.zeros(3), 2, -1)
    with pytest.raises(TypeError, match="`drop_remainder` must be a bool"):
        data.Batches(np.zeros(3), 2, drop_remainder="yes")
