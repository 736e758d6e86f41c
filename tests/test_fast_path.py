"""The im2col convolution path equals the reference ``lax.conv_general_dilated`` path.

"Equal" means equal to fp32 rounding, not bitwise: both compute the same sums of products in
different orders. Each output (and each gradient entry) must lie within the standard
worst-case rounding bound of a length-``n`` dot product, evaluated for both paths:
``|a - b| <= 2 * gamma_n * (|x| * |w|)`` with ``gamma_n = n * eps / (1 - n * eps)`` and
``|x| * |w|`` the same convolution of the absolute values (``n = K*K*C`` for the output,
``K*K*O`` for the input gradient, ``B*H'*W'`` for the kernel gradient). Observed differences
are far below it (relative ~1e-7); the tests also check that.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from equilib import functional as F
from equilib._src import conv_grad
from equilib.functional._conv import choose_impl
from equilib.groups import Cyclic, Dihedral
from equilib.testing import assert_equivariant

EPS = float(jnp.finfo(jnp.float32).eps)


def normal(seed, shape):
    # numpy draws: jax.random.normal compiles a program per shape (~1 s each here)
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, dtype=np.float32))


def _gamma(n):
    return n * EPS / (1 - n * EPS)


def _conv(x, w, stride, padding, impl):
    return F.conv2d(x, w, stride=stride, padding=padding, impl=impl)


def _value_and_grads(x, w, g, stride, padding, impl):
    y, vjp = jax.vjp(lambda x, w: _conv(x, w, stride, padding, impl), x, w)
    dx, dw = vjp(g)
    return y, dx, dw


def assert_same_conv(x, w, stride, padding, impl="im2col", seed=7):
    """Forward and both gradients of ``impl`` within the rounding bound of the reference."""
    ref = jax.jit(lambda x, w, g: _value_and_grads(x, w, g, stride, padding, "xla"))
    fast = jax.jit(lambda x, w, g: _value_and_grads(x, w, g, stride, padding, impl))
    y_ref = ref(x, w, jnp.zeros(_conv(x, w, stride, padding, "xla").shape))[0]
    g = normal(seed, y_ref.shape)
    y0, dx0, dw0 = ref(x, w, g)
    y1, dx1, dw1 = fast(x, w, g)
    # the same convolution of absolute values bounds the rounding of both paths
    ya, dxa, dwa = ref(jnp.abs(x), jnp.abs(w), jnp.abs(g))
    kh, kw, c, o = w.shape
    b = x.shape[0]
    for name, a, r, bound, n in (("output", y1, y0, ya, kh * kw * c),
                                 ("input gradient", dx1, dx0, dxa, kh * kw * o),
                                 ("kernel gradient", dw1, dw0, dwa, b * y0.shape[1] * y0.shape[2])):
        assert a.shape == r.shape and a.dtype == r.dtype, name
        diff = np.abs(np.asarray(a, np.float64) - np.asarray(r, np.float64))
        tol = 2 * _gamma(n) * np.asarray(bound, np.float64) + 1e-30
        worst = float(np.max(diff / tol)) if diff.size else 0.0
        assert worst <= 1.0, f"{name}: difference {worst:.3g} x the fp32 rounding bound"
        # and in practice far below the bound: a few ulps of the largest entry
        scale = float(np.max(np.abs(np.asarray(r)))) if r.size else 0.0
        assert float(np.max(diff, initial=0.0)) <= 1e-5 * max(scale, 1e-30), name


# --- every padding, stride 1 and 2, odd and even kernels and sizes -----------------------------
@pytest.mark.parametrize("padding", ["SAME", "VALID", "CIRCULAR"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel,size", [(3, 9), (4, 8), (5, 10)])
def test_im2col_equals_reference(padding, stride, kernel, size):
    x = normal(0, (2, size, size, 5))
    w = normal(1, (kernel, kernel, 5, 6))
    assert_same_conv(x, w, stride, padding)


def test_rectangular_and_1x1_kernels_non_square_input():
    x = normal(0, (2, 9, 7, 3))
    for padding, stride in (("SAME", 2), ("VALID", 1), ("CIRCULAR", 1)):
        assert_same_conv(x, normal(1, (2, 5, 3, 4)), stride, padding)
    assert_same_conv(x, normal(2, (1, 1, 3, 4)), 2, "SAME")


# --- the shapes the models use --------------------------------------------------------------
# (batch, H, W, C_in, K, C_out, padding): P4CNN (10 C4 fields = 40 channels), P4MCNN (7 D4
# fields = 56), Z2CNN (20), P4CNN-RotationPooling (20 -> 80), and the C16 steerable stack's
# kernels and map sizes with fewer fields (2 regular C16 fields = 32 channels).
MODEL_SHAPES = {
    "p4cnn_lift": (4, 28, 28, 1, 3, 40, "VALID"),
    "p4cnn_gconv_26": (4, 26, 26, 40, 3, 40, "VALID"),
    "p4cnn_gconv_12": (4, 12, 12, 40, 3, 40, "VALID"),
    "p4cnn_top": (4, 4, 4, 40, 4, 40, "VALID"),
    "p4mcnn_gconv": (4, 10, 10, 56, 3, 56, "VALID"),
    "z2cnn_conv": (4, 26, 26, 20, 3, 20, "VALID"),
    "p4cnn_rp_lift": (4, 24, 24, 20, 3, 80, "VALID"),
    "c16_first_k7": (2, 29, 29, 1, 7, 32, "SAME"),
    "c16_k9": (2, 29, 29, 1, 9, 32, "SAME"),
    "c16_k7": (2, 15, 15, 32, 7, 32, "SAME"),
    "c16_k5": (2, 8, 8, 32, 5, 48, "SAME"),
}


@pytest.mark.parametrize("name", sorted(MODEL_SHAPES))
def test_model_shapes(name):
    b, h, w, c, k, o, padding = MODEL_SHAPES[name]
    assert_same_conv(normal(0, (b, h, w, c)), normal(1, (k, k, c, o)), 1, padding)


@pytest.mark.parametrize("stride", [1, 2])
def test_auto_equals_reference(stride):
    x, w = normal(0, (2, 11, 11, 8)), normal(1, (3, 3, 8, 8))
    assert_same_conv(x, w, stride, "SAME", impl="auto")


# --- lifting / group convolutions and a whole model ------------------------------------------
@pytest.mark.parametrize("G", [Cyclic(4), Dihedral(4)], ids=str)
def test_lifting_and_group_conv_paths_agree_and_stay_equivariant(G):
    x = normal(0, (2, 9, 9, 3))
    k1, k2 = normal(1, (3, 3, 3, 4)), normal(2, (3, 3, 4, G.order, 5))
    b1 = normal(3, (4,))
    for impl in ("xla", "im2col"):
        lift = jax.jit(lambda x, impl=impl: F.lifting_conv(x, k1, G, bias=b1, impl=impl))
        gconv = jax.jit(lambda z, impl=impl: F.group_conv(z, k2, G, impl=impl))
        assert_equivariant(lift, x, G, output="regular")  # still exact (fp32 rounding)
        z = lift(x)
        assert_equivariant(gconv, z, G, input="regular", output="regular")
    z = F.lifting_conv(x, k1, G, impl="xla")
    np.testing.assert_allclose(F.lifting_conv(x, k1, G, impl="im2col"), z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(F.group_conv(z, k2, G, stride=2, padding="CIRCULAR", impl="im2col"),
                               F.group_conv(z, k2, G, stride=2, padding="CIRCULAR", impl="xla"),
                               rtol=1e-5, atol=1e-5)


def test_p4cnn_train_gradients_agree_across_paths(monkeypatch):
    """The environment override reaches every layer of a model: logits and parameter
    gradients of P4CNN (train mode) agree between the two paths."""
    from equilib.models import P4CNN

    x = normal(0, (4, 28, 28, 1))
    y = jnp.arange(4) % 10
    model = P4CNN(rngs=nnx.Rngs(0))
    model.train()
    graphdef, state = nnx.split(model)

    def loss(m):
        logits = m(x)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), y]), logits

    def make_step():  # a new function per setting: jit caches traces per function
        def step(state):  # as equilib.training: merge inside jit, nnx.value_and_grad
            m = nnx.merge(graphdef, state)
            (val, logits), grads = nnx.value_and_grad(loss, has_aux=True)(m)
            return val, logits, nnx.to_pure_dict(grads)
        return step

    out = {}
    for impl in ("xla", "im2col"):
        monkeypatch.setenv("EQUILIB_CONV_IMPL", impl)
        fn = jax.jit(make_step())
        out[impl] = fn(state)
        text = fn.lower(state).as_text()
        assert ("convolution" in text) == (impl == "xla")  # the override took effect
    (v0, l0, g0), (v1, l1, g1) = out["xla"], out["im2col"]
    np.testing.assert_allclose(l1, l0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    # (biases before batch norm have gradient 0 up to rounding: compare on the global scale)
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(g0))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)


# --- selection and errors ---------------------------------------------------------------------
def test_choose_impl_rule(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # the rule under XLA:CPU's YNNPACK fusions
    assert choose_impl((128, 26, 26, 40), (3, 3, 40, 40), 1, backend="cpu") == "im2col"
    assert choose_impl((128, 26, 26, 40), (3, 3, 40, 40), 1, backend="gpu") == "xla"
    assert choose_impl((128, 26, 26, 40), (1, 1, 40, 40), 1, backend="cpu") == "xla"


def test_choose_impl_follows_the_ynn_flag(monkeypatch):
    from equilib.functional._conv import ynn_convolutions_off

    assert ynn_convolutions_off("--xla_cpu_experimental_ynn_fusion_type=")
    assert ynn_convolutions_off("--foo=1 --xla_cpu_experimental_ynn_fusion_type=individual_dot")
    assert not ynn_convolutions_off("--xla_cpu_experimental_ynn_fusion_type=individual_dot,convolution")
    assert not ynn_convolutions_off("--xla_force_host_platform_device_count=2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
    assert choose_impl((128, 26, 26, 40), (3, 3, 40, 40), 1, backend="cpu") == "xla"


def test_vmap_and_bf16():
    x, w = normal(0, (3, 2, 8, 8, 4)), normal(1, (3, 3, 4, 5))
    f = lambda impl: jax.vmap(lambda xi: F.conv2d(xi, w, impl=impl))(x)
    np.testing.assert_allclose(f("im2col"), f("xla"), rtol=1e-5, atol=1e-5)
    xb, wb = x[0].astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    for pet in (None, jnp.float32):
        a = F.conv2d(xb, wb, impl="im2col", preferred_element_type=pet)
        r = F.conv2d(xb, wb, impl="xla", preferred_element_type=pet)
        assert a.dtype == r.dtype
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(r, np.float32), rtol=2e-2, atol=5e-2)


def test_impl_errors(monkeypatch):
    x, w = normal(0, (1, 5, 5, 2)), normal(1, (3, 3, 2, 2))
    with pytest.raises(ValueError, match="`impl` must be one of"):
        F.conv2d(x, w, impl="fft")
    monkeypatch.setenv("EQUILIB_CONV_IMPL", "fast")
    with pytest.raises(ValueError, match="EQUILIB_CONV_IMPL must be one of"):
        F.conv2d(x, w)
    F.conv2d(x, w, impl="xla")  # an explicit argument wins over the environment
    with pytest.raises(TypeError, match="same dtype"):
        F.conv2d(x, w.astype(jnp.bfloat16), impl="im2col")


def test_im2col_negative_control():
    # an unconstrained kernel through the fast path is not C4-equivariant: the harness must say so
    x, w = normal(10, (2, 9, 9, 3)), normal(11, (3, 3, 3, 8))
    f = lambda x: F.conv2d(x, w, impl="im2col").reshape(x.shape[:3] + (2, 4))  # noqa: E731
    with pytest.raises(AssertionError, match="not C4-equivariant"):
        assert_equivariant(f, x, Cyclic(4), output="regular")


# --- the kernel gradient summed over chunks of the batch (equilib._src.conv_grad) --------------
@pytest.mark.parametrize("batch, spatial", [(16, 2), (12, 2), (8, 3)])
def test_chunked_kernel_gradient_equals_lax(batch, spatial):
    """F.conv2d / F.conv3d's XLA path against ``lax.conv_general_dilated`` itself: the same
    forward pass, bit for bit; the kernel gradient (summed over chunks of the batch) within the
    rounding bound of its sum; forward mode, second order and vmap work as for lax."""
    size, c, o = (12, 3, 4) if spatial == 2 else (8, 2, 3)
    x = normal(1, (batch,) + (size,) * spatial + (c,))
    w = normal(2, (3,) * spatial + (c, o))
    dn = ("NHWC", "HWIO", "NHWC") if spatial == 2 else ("NDHWC", "DHWIO", "NDHWC")
    ours = (lambda x, w: F.conv2d(x, w, padding="VALID", impl="xla")) if spatial == 2 else \
        (lambda x, w: F.conv3d(x, w, padding="VALID"))

    def lax_conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1,) * spatial, "VALID", dimension_numbers=dn)

    y = lax_conv(x, w)
    chunks = conv_grad.chunk_count(x.shape, w.shape, y.shape, spatial)
    assert chunks == {16: 8, 12: 4, 8: 8}[batch]  # the shapes exercise the chunked gradient
    np.testing.assert_array_equal(ours(x, w), y)
    g = normal(3, y.shape)
    (dx0, dw0), (dx1, dw1) = (jax.vjp(f, x, w)[1](g) for f in (lax_conv, ours))
    np.testing.assert_array_equal(dx1, dx0)  # XLA's own input gradient
    bound = 2 * _gamma(batch * math.prod(y.shape[1:1 + spatial])) * np.asarray(
        jax.vjp(lambda w: lax_conv(jnp.abs(x), w), w)[1](jnp.abs(g))[0], np.float64)
    assert np.all(np.abs(np.asarray(dw1, np.float64) - np.asarray(dw0, np.float64)) <= bound)
    # forward mode and second order (a Hessian-vector product) through the custom JVP
    tx, tw = normal(4, x.shape), normal(5, w.shape)
    for a, b in zip(jax.jvp(ours, (x, w), (tx, tw)), jax.jvp(lax_conv, (x, w), (tx, tw))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)

    def hvp(f):
        return jax.jvp(jax.grad(lambda w: jnp.sum(jnp.sin(f(x, w)))), (w,), (tw,))[1]

    np.testing.assert_allclose(hvp(ours), hvp(lax_conv), rtol=1e-4, atol=1e-4)
    xs = jnp.stack([x, 2 * x])
    np.testing.assert_array_equal(jax.vmap(lambda x: ours(x, w))(xs), jax.vmap(lambda x: lax_conv(x, w))(xs))


def test_kernel_gradient_chunking_rule():
    # chunked where the contraction is >= RATIO x the kernel's entries, into CHUNKS (or the
    # largest of 4, 2 dividing the batch); not otherwise (measured: benchmarks/RESULTS.md)
    assert conv_grad.chunk_count((128, 26, 26, 40), (3, 3, 40, 40), (128, 24, 24, 40), 2) == 8
    assert conv_grad.chunk_count((128, 12, 12, 40), (3, 3, 40, 40), (128, 10, 10, 40), 2) == 1
    assert conv_grad.chunk_count((4, 29, 29, 288), (5, 5, 288, 288), (4, 29, 29, 288), 2) == 1
    assert conv_grad.chunk_count((7, 28, 28, 1), (3, 3, 1, 4), (7, 26, 26, 4), 2) == 1  # 7: no divisor
    assert conv_grad.chunk_count((6, 28, 28, 1), (3, 3, 1, 4), (6, 26, 26, 4), 2) == 2
