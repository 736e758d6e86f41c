"""equilib.transforms: exactness of quarter turns, flips and shifts, the measured round-trip error of
continuous rotation, shapes, keys, and jit + vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilib import transforms as T
from equilib.functional import rescale, rotate
from equilib.groups import Cyclic, Dihedral
from equilib.groups3d import FullOctahedral, Octahedral
from equilib.testing import disk_mask, smooth_random

KEYS = jax.random.split(jax.random.key(0), 24)


def image(h=9, w=9, c=2, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c)).astype(dtype)


def draws(t, x, keys=KEYS):
    """``t(k, x)`` for every key, as one jitted vmap over the keys (one compilation)."""
    return list(jax.jit(jax.vmap(t, in_axes=(0, None)))(keys, x))


def matches(out, candidates):
    """Index of the candidate equal to ``out`` bit for bit (None if none)."""
    out = np.asarray(out)
    hits = [i for i, c in enumerate(candidates) if out.dtype == c.dtype and np.array_equal(out, c)]
    return hits[0] if hits else None


def test_rotating_by_90_degrees_is_rot90_exactly():
    x = image()
    for k in range(4):
        np.testing.assert_array_equal(rotate(x, k * math.pi / 2), np.rot90(x, k, axes=(0, 1)))
    # a traced angle (RandomRotation) goes through float32 cos/sin: equal up to that rounding
    t = T.RandomRotation(math.pi / 2, math.pi / 2)
    np.testing.assert_allclose(t(KEYS[0], x), np.rot90(x, 1, axes=(0, 1)), atol=2e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_random_rot90_is_an_exact_quarter_turn(dtype):
    x = image(dtype=dtype)
    turns = [np.rot90(x, k, axes=(0, 1)) for k in range(4)]
    seen = {matches(o, turns) for o in draws(T.RandomRot90(), x)}
    assert seen == {0, 1, 2, 3}  # every output is one exact quarter turn; all of them occur
    batch = np.stack([image(dtype=dtype, seed=s) for s in range(16)])
    out = jax.jit(T.apply_batch, static_argnums=0)(T.RandomRot90(), KEYS[0], batch)
    assert out.dtype == dtype and out.shape == batch.shape
    ks = [matches(o, [np.rot90(b, k, axes=(0, 1)) for k in range(4)]) for o, b in zip(out, batch)]
    assert None not in ks and len(set(ks)) > 1  # per-example draws


def test_random_group_element_dihedral_and_off_grid():
    x = image(dtype=np.uint8)
    d4 = [np.rot90(f, k, axes=(0, 1)) for f in (x, x[:, ::-1]) for k in range(4)]
    seen = {matches(o, d4) for o in draws(T.RandomGroupElement(Dihedral(4)), x)}
    assert None not in seen and len(seen) >= 6
    c8 = T.RandomGroupElement(Cyclic(8))
    outs = draws(c8, x)
    assert matches(c8(KEYS[0], x), [np.asarray(outs[0])]) == 0  # eager == jit + vmap
    assert all(o.dtype == jnp.float32 for o in outs)  # off-grid elements interpolate
    quarter = [np.rot90(x, k, axes=(0, 1)).astype(np.float32) for k in range(4)]
    assert any(matches(o, quarter) is not None for o in outs)  # even elements are exact
    assert any(matches(o, quarter) is None for o in outs)
    with pytest.raises(ValueError, match="needs square images"):
        T.RandomRot90()(KEYS[0], image(9, 7))
    assert T.RandomGroupElement(Dihedral(2))(KEYS[0], image(9, 7)).shape == (9, 7, 2)  # half turns ok


def test_random_octahedral_elements_of_volumes():
    """Octahedral() / FullOctahedral() on volumes: every element is drawn (over 300 keys), each
    output is that element's exact transform (dtype kept); a non-cubic volume and bad axes are
    refused, naming the argument."""
    x = np.random.default_rng(0).integers(0, 256, (3, 3, 3, 2)).astype(np.uint8)  # (D, H, W, C)
    keys = jax.random.split(jax.random.key(1), 300)
    for G in (Octahedral(), FullOctahedral()):
        outs = draws(T.RandomGroupElement(G), x, keys)
        seen = {matches(o, [G.transform_image(x, g) for g in range(G.order)]) for o in outs}
        assert None not in seen and len(seen) == G.order and outs[0].dtype == np.uint8
    assert T.RandomGroupElement(Octahedral(), axes=(0, 1, 2))(KEYS[0], x).shape == x.shape
    with pytest.raises(ValueError, match="needs cubic volumes, got spatial shape \\(3, 3, 4\\)"):
        T.RandomGroupElement(Octahedral())(KEYS[0], np.zeros((3, 3, 4, 1)))
    with pytest.raises(TypeError, match="`axes` must be a triple of ints"):
        T.RandomGroupElement(Octahedral(), axes=(-3, -2))
    with pytest.raises(ValueError, match="`axes` must name three different axes"):
        T.RandomGroupElement(Octahedral(), axes=(0, 0, 1))


def test_continuous_rotation_round_trip_error_is_measured_and_bounded():
    """Rotate by t ~ U[0, 2pi) and back: relative L2 error inside 0.8 of the disk radius, on
    band-limited inputs (sigma 1.5 px) cut to the disk. Measured: mean 0.097, max 0.129 over these
    64 angles (the numbers quoted in RandomRotation's docstring)."""
    x = smooth_random(jax.random.key(0), (64, 28, 28, 1), sigma=1.5) * disk_mask(28, 28)[None, :, :, None]
    angles = jax.random.uniform(jax.random.key(1), (64,), maxval=2 * math.pi)
    fwd = jax.jit(jax.vmap(lambda im, t: rotate(im, t)))
    there = fwd(x, angles)
    back = fwd(there, -angles)
    m = disk_mask(28, 28, 0.8)[None, :, :, None]

    def rel(a, b):
        norm = lambda v: np.linalg.norm((v * m).reshape(64, -1), axis=1)  # noqa: E731
        return norm(a - b) / norm(b)

    err = rel(back, x)
    assert 0.08 < err.mean() < 0.11 and err.max() < 0.14, (err.mean(), err.max())
    assert rel(there, x).mean() > 0.5  # the forward rotation really moves the content


def test_random_rotation_angle_range_and_direction():
    x = np.zeros((9, 9, 1), np.float32)
    x[4, 8] = 1.0  # on the positive x axis (right of centre)
    t = T.RandomRotation(0.0, math.pi / 4)
    for y in draws(t, x):
        y = np.asarray(y)[..., 0]
        r, c = np.unravel_index(np.argmax(y), y.shape)
        assert r <= 4 and c >= 4  # counter-clockwise as displayed by at most 45 degrees: up and right
    with pytest.raises(ValueError, match="`min_angle` must be <= `max_angle`"):
        T.RandomRotation(1.0, 0.0)
    with pytest.raises(TypeError, match="`max_angle` must be a finite real number"):
        T.RandomRotation(0.0, "pi")


def test_random_scale():
    x = image(28, 28, 1)
    np.testing.assert_array_equal(T.RandomScale(0.5, 0.5)(KEYS[0], x), rescale(x, jnp.float32(0.5)))
    y = T.RandomScale(0.5, 0.5, method="bicubic")(KEYS[0], x)
    np.testing.assert_allclose(y, rescale(x, 0.5, method="bicubic"), rtol=1e-6, atol=1e-3)
    blob = np.asarray(disk_mask(28, 28, 0.6))[..., None]
    for log_uniform in (False, True):
        t = T.RandomScale(0.3, 0.9, log_uniform=log_uniform)
        mass = np.array([float(o.sum()) for o in draws(t, blob)]) / blob.sum()
        assert np.all(mass > 0.3**2 * 0.8) and np.all(mass < 0.9**2 * 1.1) and mass.std() > 0.05
    with pytest.raises(ValueError, match="need 0 < `min_factor` <= `max_factor`"):
        T.RandomScale(0.0, 1.0)
    with pytest.raises(ValueError, match="`method` must be 'bilinear' or 'bicubic', got 'nearest'"):
        T.RandomScale(method="nearest")


def test_random_flip():
    x = image(dtype=np.uint8)
    cands = [x, x[:, ::-1], x[::-1], x[::-1, ::-1]]
    assert {matches(o, cands) for o in draws(T.RandomFlip(), x)} == {0, 1}
    assert {matches(o, cands) for o in draws(T.RandomFlip(vertical=True), x)} == {0, 1, 2, 3}
    assert matches(T.RandomFlip(horizontal=False, vertical=True, p=1.0)(KEYS[0], x), cands) == 2
    assert matches(T.RandomFlip(p=0.0)(KEYS[0], x), cands) == 0
    with pytest.raises(ValueError, match=r"`p` must be in \[0, 1\], got 1.5"):
        T.RandomFlip(p=1.5)


@pytest.mark.parametrize("mode", ["circular", "zeros"])
def test_random_translation(mode):
    x = image(dtype=np.uint8) + 1  # no zeros in the image itself

    def shifted(dy, dx):
        y = np.roll(x, (dy, dx), axis=(0, 1))
        if mode == "zeros":
            rows, cols = np.arange(9)[:, None] - dy, np.arange(9)[None, :] - dx
            y = np.where(((rows >= 0) & (rows < 9) & (cols >= 0) & (cols < 9))[..., None], y, 0)
        return y

    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    cands = [shifted(*s) for s in shifts]
    t = T.RandomTranslation(1, mode=mode)
    seen = {matches(o, cands) for o in draws(t, x, jax.random.split(jax.random.key(3), 64))}
    assert seen == set(range(9))  # exactly the shifts in [-1, 1]^2, all of them
    assert matches(T.RandomTranslation((2, 0), mode=mode)(KEYS[1], x),
                   [shifted(dy, 0) for dy in range(-2, 3)]) is not None
    with pytest.raises(ValueError, match="`mode` must be 'circular' or 'zeros', got 'reflect'"):
        T.RandomTranslation(1, mode="reflect")
    with pytest.raises(ValueError, match="`max_shift` must be an int >= 0"):
        T.RandomTranslation(-1)


def test_compose_jit_vmap_shapes_and_keys():
    aug = T.Compose(T.RandomRotation(), T.RandomScale(0.7, 1.0), T.RandomFlip(vertical=True),
                    T.RandomTranslation(2, mode="zeros"), T.RandomGroupElement(Dihedral(4)))
    x = jnp.asarray(np.stack([image(28, 28, 1, seed=s) for s in range(8)]))
    jitted = jax.jit(T.apply_batch, static_argnums=0)
    y = jitted(aug, jax.random.key(5), x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    k = jax.random.split(jax.random.key(5), 8)[3]  # apply_batch: example i gets split(key, B)[i]
    np.testing.assert_allclose(y[3], jax.jit(aug)(k, x[3]), rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(y, jitted(aug, jax.random.key(5), x))  # same key, same output
    assert not np.allclose(y, jitted(aug, jax.random.key(6), x))  # another key, another output
    assert not np.allclose(y[0], y[1]) or not np.allclose(x[0], x[1])
    # Compose applies its transforms in order, each with its own key from split(key, n)
    a, b = T.RandomTranslation(3), T.RandomFlip(vertical=True)
    ka, kb = jax.random.split(KEYS[2])
    np.testing.assert_array_equal(T.Compose(a, b)(KEYS[2], x[0]), b(kb, a(ka, x[0])))
    # a plain (H, W) image with axes=(-2, -1), and an empty Compose
    t = T.Compose([T.RandomRot90(axes=(-2, -1))])
    assert t(KEYS[0], np.ones((5, 5))).shape == (5, 5)
    assert T.Compose()(KEYS[0], x) is x
    assert hash(aug) == hash(T.Compose(*aug.transforms))
    with pytest.raises(TypeError, match=r"`transforms\[0\]` must be a callable"):
        T.Compose(3)
    with pytest.raises(ValueError, match="`x` must have a leading batch axis"):
        T.apply_batch(aug, KEYS[0], jnp.float32(1.0))
    with pytest.raises(TypeError, match="`axes` must be a pair of ints"):
        T.RandomFlip(axes=(1,))
    with pytest.raises(TypeError, match="`group` must be an equilib.groups.Group"):
        T.RandomGroupElement("C4")
