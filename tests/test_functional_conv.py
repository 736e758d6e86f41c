"""Functional core: kernel expansions against a naive reference, exact equivariance, shifts."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilib import functional as F
from equilib.groups import Cyclic, Dihedral, Trivial
from equilib.testing import assert_equivariant, assert_translation_equivariant, equivariance_error

EXACT = [Trivial(), Cyclic(2), Cyclic(4), Dihedral(1), Dihedral(2), Dihedral(4)]


def normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize("G", EXACT + [Cyclic(8), Dihedral(8)], ids=str)
def test_expand_group_kernel_matches_naive_definition(G):
    k, c, o = 3, 2, 3
    psi = normal(0, (k, k, c, G.order, o))
    w = np.asarray(F.expand_group_kernel(psi, G)).reshape(k, k, c, G.order, o, G.order)
    lift = np.asarray(F.expand_lifting_kernel(psi[:, :, :, 0, :], G)).reshape(k, k, c, o, G.order)
    for h in range(G.order):
        if not G.is_grid_preserving(h):
            continue
        # W[d, c, k, o, h] = psi[h^-1 d, c, h^-1 k, o]: spatial transform by h, group axis permuted
        ref = G.transform_image(np.asarray(psi), h, axes=(0, 1))
        ref = G.transform_group_axis(ref, h, axis=3)
        if G.is_exact:
            np.testing.assert_array_equal(w[..., h], ref)
            expected = G.transform_image(np.asarray(psi[:, :, :, 0, :]), h, axes=(0, 1))
            np.testing.assert_array_equal(lift[..., h], expected)
        else:  # band-limited projection, then exactly permuted on the rot90 subgroup
            proj = w[..., 0]
            np.testing.assert_allclose(w[..., h], G.transform_group_axis(
                G.transform_image(proj, h, axes=(0, 1)), h, axis=3), atol=1e-6)


@pytest.mark.parametrize("G", EXACT, ids=str)
@pytest.mark.parametrize("padding,stride,size", [("SAME", 1, 9), ("VALID", 1, 10), ("CIRCULAR", 1, 8),
                                                 ("SAME", 2, 11), ("VALID", 2, 11), ("CIRCULAR", 3, 10)])
def test_lifting_and_group_conv_exactly_equivariant(G, padding, stride, size):
    x = normal(0, (2, size, size, 3))
    k1, k2 = normal(1, (3, 3, 3, 4)), normal(2, (3, 3, 4, G.order, 5))
    b1, b2 = normal(3, (4,)), normal(4, (5,))
    lift = lambda x: F.lifting_conv(x, k1, G, stride=stride, padding=padding, bias=b1)
    assert_equivariant(lift, x, G, output="regular")
    z = lift(x)
    gconv = lambda z: F.group_conv(z, k2, G, padding=padding, bias=b2)
    assert_equivariant(gconv, z, G, input="regular", output="regular")
    assert_equivariant(jax.jit(gconv), z, G, input="regular", output="regular")


@pytest.mark.parametrize("size,kernel,stride,padding", list(itertools.product(
    [7, 8], [1, 2, 3, 4], [1, 2, 3], ["SAME", "VALID", "CIRCULAR"])))
def test_is_symmetric_sampling_predicts_exactness(size, kernel, stride, padding):
    """The rule behind check_exact is right both ways: symmetric sampling <=> exact rot90."""
    G = Cyclic(4)
    x = normal(0, (1, size, size, 2))
    w = normal(1, (kernel, kernel, 2, 3))
    err = equivariance_error(lambda x: F.lifting_conv(x, w, G, stride=stride, padding=padding),
                             x, G, output="regular")
    symmetric = F.is_symmetric_sampling(size, kernel, stride, padding)
    if symmetric:
        assert err < 1e-5
    else:
        assert err > 1e-2


@pytest.mark.parametrize("G", [Trivial(), Cyclic(4), Dihedral(4), Cyclic(8)], ids=str)
def test_circular_padding_gives_exact_shift_equivariance(G):
    x = normal(0, (1, 8, 8, 2))
    k1, k2 = normal(1, (3, 3, 2, 3)), normal(2, (3, 3, 3, G.order, 2))
    f = lambda x: F.group_conv(jax.nn.relu(F.lifting_conv(x, k1, G, padding="CIRCULAR")), k2, G,
                               padding="CIRCULAR")
    assert_translation_equivariant(jax.jit(f), x, output="regular")  # all 64 shifts
    # stride 2: equivariant for even shifts, the output moving by half
    g = lambda x: F.lifting_conv(x, k1, G, padding="CIRCULAR", stride=2)
    assert_translation_equivariant(g, x, output="regular", stride=2)


def test_zero_padding_is_not_shift_equivariant():
    """Negative control for the translation harness."""
    x = normal(0, (1, 8, 8, 2))
    w = normal(1, (3, 3, 2, 3))
    with pytest.raises(AssertionError, match="not translation-equivariant"):
        assert_translation_equivariant(lambda x: F.conv2d(x, w, padding="SAME"), x, [(0, 1), (3, 3)])


def test_c8_rot90_subgroup_exact_and_45_degrees_approximate():
    G = Cyclic(8)
    x = normal(0, (2, 9, 9, 3))
    w = normal(1, (3, 3, 3, 4))
    f = lambda x: F.lifting_conv(x, w, G)
    assert_equivariant(f, x, G, output="regular", elements=[0, 2, 4, 6])
    with pytest.raises(ValueError, match="off_grid_rtol"):
        assert_equivariant(f, x, G, output="regular")


def test_c8_error_at_45_degrees_is_the_documented_number():
    """The number in LiftingConv's docstring (0.029) is what the harness measures."""
    from equilib.testing import equivariance_errors, smooth_random

    G = Cyclic(8)
    x = smooth_random(jax.random.key(0), (2, 33, 33, 3), sigma=1.5)
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 6))
    errs = equivariance_errors(lambda x: F.lifting_conv(x, w, G), x, G, output="regular")
    assert 0.02 < errs[1] < 0.035
    assert max(errs[g] for g in (0, 2, 4, 6)) < 1e-5
    plain = equivariance_errors(lambda x: F.conv2d(x, w), x, G, output="plain", elements=[1])
    assert plain[1] > 5 * errs[1]  # a plain conv is far worse: negative control


def test_transforms_are_differentiable_and_vmappable():
    G = Dihedral(4)
    x = normal(0, (2, 7, 7, 2))
    w = normal(1, (3, 3, 2, G.order, 3))
    z = normal(2, (2, 7, 7, 2, G.order))
    loss = lambda w: jnp.sum(F.group_conv(z, w, G) ** 2)
    g = jax.grad(loss)(w)
    assert g.shape == w.shape and bool(jnp.all(jnp.isfinite(g)))
    # gradient matches finite differences along a random direction
    d = normal(3, w.shape)
    eps = 1e-3
    fd = (loss(w + eps * d) - loss(w - eps * d)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(g, d), fd, rtol=2e-2)
    ws = jnp.stack([w, 2 * w])
    ys = jax.vmap(lambda w: F.group_conv(z, w, G))(ws)
    np.testing.assert_allclose(ys[1], 2 * ys[0], rtol=1e-5, atol=1e-5)
    assert F.lifting_conv(x, w[..., 0, :], G).shape == (2, 7, 7, 3, 8)


def test_conv2d_matches_lax_and_padding_modes():
    x = normal(0, (1, 6, 6, 2))
    w = normal(1, (3, 3, 2, 4))
    ref = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(F.conv2d(x, w), ref, rtol=1e-6, atol=1e-6)
    assert F.conv2d(x, w, padding="VALID").shape == (1, 4, 4, 4)
    assert F.conv2d(x, w, padding="circular", stride=2).shape == (1, 3, 3, 4)
    # circular == zero-padded convolution of the periodically tiled image, centre crop
    tiled = jnp.tile(x, (1, 3, 3, 1))
    big = F.conv2d(tiled, w, padding="SAME")[:, 6:12, 6:12]
    np.testing.assert_allclose(F.conv2d(x, w, padding="CIRCULAR"), big, rtol=1e-5, atol=1e-5)
