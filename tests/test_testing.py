"""The harness itself: it reports true errors, masks off-grid angles, and fails when it must."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilib.groups import Cyclic, Dihedral
from equilib.testing import (
    assert_equivariant,
    assert_translation_equivariant,
    disk_mask,
    equivariance_errors,
    smooth_random,
    translation_errors,
)


def test_identity_and_pointwise_maps_are_equivariant():
    x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
    errs = assert_equivariant(jax.nn.relu, x, Dihedral(4))
    assert set(errs) == set(range(8)) and max(errs.values()) == 0.0
    z = jax.random.normal(jax.random.key(0), (1, 5, 5, 2, 8))
    assert_equivariant(lambda z: z * 2, z, Dihedral(4), input="regular", output="regular")


def test_negative_controls():
    x = jax.random.normal(jax.random.key(0), (1, 7, 7, 1))
    # a map that transposes is equivariant under rot180 but not rot90
    f = lambda x: jnp.swapaxes(x, 1, 2)
    errs = equivariance_errors(f, x, Cyclic(4))
    assert errs[2] < 1e-7 and errs[1] > 0.1
    with pytest.raises(AssertionError, match="not C4-equivariant"):
        assert_equivariant(f, x, Cyclic(4))
    # a spatial shift is not rotation-equivariant
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: jnp.roll(x, 1, axis=1), x, Cyclic(4))
    # and an image-dependent but position-blind map is not translation-equivariant
    with pytest.raises(AssertionError, match="not translation-equivariant"):
        assert_translation_equivariant(lambda x: x * jnp.arange(7.0)[None, :, None, None], x)
    # invariant output: a non-invariant read-out must fail
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x[:, 0, 0], x, Cyclic(4), output="invariant")


def test_off_grid_angles_are_measured_with_a_mask_and_reported():
    C8 = Cyclic(8)
    x = smooth_random(jax.random.key(0), (1, 33, 33, 1), sigma=2.0)
    # an isotropic blur commutes with every rotation in the continuum; on the grid, off-grid
    # angles are only approximate (interpolation), grid-preserving ones exact
    r = np.arange(-3, 4)
    k = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 4.0)
    k = jnp.asarray((k / k.sum())[:, :, None, None], jnp.float32)
    from equilib.functional import conv2d
    blur = lambda x: conv2d(x, k)
    errs = equivariance_errors(blur, x, C8)
    assert max(errs[g] for g in (0, 2, 4, 6)) < 1e-6
    assert 1e-4 < errs[1] < 0.05
    # an off-grid tolerance is required, and a tight one fails with the numbers in the message
    with pytest.raises(AssertionError, match=r"45.0 deg\): "):
        assert_equivariant(blur, x, C8, off_grid_rtol=1e-6)
    assert_equivariant(blur, x, C8, off_grid_rtol=0.05)
    # the mask matters: without it (mask over the whole canvas) the corners dominate
    whole = equivariance_errors(blur, x, C8, elements=[1], mask_fraction=1.5)[1]
    assert whole > errs[1]


def test_masks_and_smooth_inputs():
    m = disk_mask(9, 9)
    assert m[4, 4] == 1 and m[0, 0] == 0 and m[4, 0] == 1
    x = smooth_random(jax.random.key(0), (2, 16, 16, 3))
    assert x.shape == (2, 16, 16, 3) and abs(float(jnp.std(x)) - 1) < 1e-4
    # smoother than white noise: neighbouring pixels correlate
    corr = np.corrcoef(np.asarray(x[:, :-1]).ravel(), np.asarray(x[:, 1:]).ravel())[0, 1]
    assert corr > 0.5


def test_translation_errors_and_strides():
    x = jax.random.normal(jax.random.key(0), (1, 6, 6, 1))
    errs = translation_errors(lambda x: x, x)
    assert len(errs) == 36 and max(errs.values()) == 0.0
    sub = lambda x: x[:, ::2, ::2]
    assert len(assert_translation_equivariant(sub, x, stride=2)) == 9
    with pytest.raises(ValueError, match=r"not a multiple of `stride` \(=2\)"):
        translation_errors(sub, x, [(1, 0)], stride=2)
    assert_translation_equivariant(lambda x: x.sum((1, 2)), x, output="invariant")
