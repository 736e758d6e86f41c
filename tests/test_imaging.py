import jax
import jax.numpy as jnp
import numpy as np
import pytest

from equilib.functional import rescale, rotate


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_rescale_identity_point_moves_and_jit(method):
    y = jax.random.normal(jax.random.key(0), (2, 10, 12, 3))
    np.testing.assert_allclose(rescale(y, 1.0, method=method), y, atol=1e-6)
    x = jnp.zeros((1, 9, 9, 1)).at[0, 4, 6, 0].set(1.0)  # 2 px right of the centre
    z = rescale(x, 0.5, method=method)
    assert int(jnp.argmax(z[0, 4, :, 0])) == 5  # now 1 px right of the centre
    z2 = jax.jit(lambda x, f: rescale(x, f, method=method))(y, jnp.float32(0.7))
    np.testing.assert_allclose(z2, rescale(y, 0.7, method=method), atol=1e-5)
    with pytest.raises(ValueError, match="`factor` must be > 0"):
        rescale(y, 0.0)
    with pytest.raises(ValueError, match="`method`"):
        rescale(y, 0.5, method="nearest")


def test_rotate_keeps_canvas_and_is_differentiable():
    x = jax.random.normal(jax.random.key(0), (1, 8, 6, 2))
    assert rotate(x, 0.4).shape == x.shape
    g = jax.grad(lambda a: jnp.sum(rotate(x, a) ** 2))(0.3)
    assert np.isfinite(float(g))


def test_traced_quarter_turns_are_exact():
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 1))
    rot = jax.jit(lambda x, a: rotate(x, a, axes=(1, 2)))
    for k in range(4):
        np.testing.assert_array_equal(rot(x, jnp.float32(k * np.pi / 2)), np.rot90(np.asarray(x), k, axes=(1, 2)))
