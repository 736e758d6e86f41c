"""equilib._src.steerable3d: the numerically solved kernel bases of 3D steerable convolutions."""

import numpy as np
import pytest

from equilib import FullOctahedral, Octahedral
from equilib._src import steerable3d as S
from equilib._src.so3 import random_rotations


def _grid_errors(basis, rho_in, rho_out, group):
    """max |K(R p) - rho_out(R) K(p) rho_in(R)^T| over the basis and the group's grid elements."""
    worst = 0.0
    for g in range(group.order):
        m = group.matrix(g)
        for b in basis:
            moved = group.transform_image(b, group.inverse(g), axes=(0, 1, 2))  # K(R p)
            rhs = np.einsum("oa,dhwab,ib->dhwoi", rho_out(m), b, rho_in(m))
            worst = max(worst, float(np.abs(moved - rhs).max()))
    return worst


@pytest.mark.parametrize("l_in, l_out", [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)])
def test_so3_bases_are_equivariant_and_have_the_clebsch_gordan_size(l_in, l_out):
    (ri, ni), (ro, no) = S.so3_irrep(l_in), S.so3_irrep(l_out)
    basis = S.kernel_basis_3d(ri, ro, ni, no, 5, S.generators("SO3"))
    # per ring, one element per degree J in |l_in - l_out| .. l_in + l_out within the ring's band limit
    expected = sum(sum(1 for j in range(abs(l_in - l_out), l_in + l_out + 1) if j <= max_degree)
                   for _, _, max_degree in S.ring_profiles(5))
    assert basis.shape == (expected, 5, 5, 5, no, ni)
    assert expected < S.unconstrained_dim(5, ni, no) / 10  # group-constrained
    np.testing.assert_allclose(basis.reshape(len(basis), -1) @ basis.reshape(len(basis), -1).T, np.eye(expected),
                               atol=1e-10)
    assert _grid_errors(basis, ri, ro, Octahedral()) < 1e-12


def test_the_constraint_holds_at_every_rotation_of_the_continuous_kernel():
    """Off the grid: the coefficients solve the constraint for rotations that were not the generators."""
    (ri, ni), (ro, no) = S.so3_irrep(1), S.so3_irrep(2)
    from equilib._src.so3 import wigner_d

    for degree in (1, 2, 3):
        coeffs = S.solve_intertwiners(degree, ri, ro, S.generators("SO3"), ni, no)
        assert len(coeffs) == 1
        for m in random_rotations(3, seed=7):
            lhs = np.einsum("mn,moi->noi", wigner_d(degree, m), coeffs[0])
            rhs = np.einsum("oa,nab,ib->noi", ro(m), coeffs[0], ri(m))
            np.testing.assert_allclose(lhs, rhs, atol=1e-10)


def test_o3_parity_tells_a_vector_from_a_pseudovector():
    """A scalar maps to a vector field by the gradient-like kernel phi(r) p (degree 1, odd); under O(3) it
    cannot map to a pseudovector (axial) field, which SO(3) cannot tell apart."""
    (rs, ns), (rv, nv) = S.so3_irrep(0), S.so3_irrep(1)
    rp, _ = S.so3_irrep(1, pseudo=True)
    assert len(S.kernel_basis_3d(rs, rv, ns, nv, 3, S.generators("O3"))) == 1
    assert len(S.kernel_basis_3d(rs, rp, ns, nv, 3, S.generators("O3"))) == 0
    assert len(S.kernel_basis_3d(rs, rp, ns, nv, 3, S.generators("SO3"))) == 1


def test_octahedral_bases_are_larger_than_so3_ones_and_exact_on_the_grid():
    """Restricted to the 24 (48) grid rotations the constraint is weaker: more kernels, still exact there.
    (Regular fields of the octahedral groups are what nn.GroupConv convolves; no basis is solved for them.)"""
    (r1, n1), (r2, n2) = S.so3_irrep(1), S.so3_irrep(2)
    for group, name, continuous in ((Octahedral(), "O", "SO3"), (FullOctahedral(), "Oh", "O3")):
        smaller = S.kernel_basis_3d(r1, r2, n1, n2, 3, S.generators(continuous))
        basis = S.kernel_basis_3d(r1, r2, n1, n2, 3, S.generators(name))
        assert 0 < len(smaller) < len(basis) < S.unconstrained_dim(3, n1, n2) / 10  # measured 2 < 5, 1 < 2
        assert _grid_errors(basis, r1, r2, group) < 1e-12
    # negative control: a basis checked against the wrong representation fails
    rp, _ = S.so3_irrep(1, pseudo=True)
    basis = S.kernel_basis_3d(r1, r1, n1, n1, 3, S.generators("SO3"))
    assert _grid_errors(basis, r1, rp, FullOctahedral()) > 0.1
