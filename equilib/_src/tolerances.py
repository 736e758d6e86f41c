"""Numerical tolerances of the group, representation and image maths, in one place.

Each constant names what it compares and in which unit; change one here, not at a call site.
"""

__all__ = [
    "PIXEL_SNAP",
    "PIXEL_SNAP_TRACED",
    "QUARTER_TURN_TOL",
    "EXACT_TRIG_TOL",
    "ELEMENT_ANGLE_TOL",
    "MATRIX_ATOL",
    "INTERTWINER_MIN_NORM",
    "ZERO_SNAP",
    "RADIUS_TOL",
    "BASIS_RANK_TOL",
    "BASIS_VANISH_TOL",
]

# Image sampling (equilib._src.imaging): a bilinear sample point this close to a pixel centre
# (in pixels) is snapped to it, so that multiples of 90 degrees are exact permutations. Python
# angles are evaluated in float64; traced angles in float32, whose cos/sin of multiples of pi/2
# are off by ~1e-7.
PIXEL_SNAP = 1e-9
PIXEL_SNAP_TRACED = 1e-4

# An angle within this many quarter turns of a multiple of 90 degrees is applied as an exact
# rot90 (SO(2)/O(2) image transforms).
QUARTER_TURN_TOL = 1e-9

# cos/sin of an angle within this many quarter turns of a multiple of 90 degrees are taken
# exactly (0, +-1), so that irreps of rot90 are exact permutations.
EXACT_TRIG_TOL = 1e-12

# An angle is an element of a finite group C_n/D_n if it is within this many rotation steps
# (2*pi/n) of a multiple of the step.
ELEMENT_ANGLE_TOL = 1e-6

# Entrywise tolerance of the float64 checks on representation matrices: orthogonality
# (Q.T @ Q = I) and being a permutation matrix.
MATRIX_ATOL = 1e-8

# Numerical decomposition of a representation into irreps: a candidate intertwiner with a
# smaller norm is taken as zero; entries of the change of basis below ZERO_SNAP are set to 0.
INTERTWINER_MIN_NORM = 1e-6
ZERO_SNAP = 1e-14

# Steerable kernel bases: radii and frequency cutoffs within RADIUS_TOL (pixels / frequency
# units) count as equal; a Gram-Schmidt residual below BASIS_RANK_TOL is linearly dependent;
# a sampled basis element whose norm is below BASIS_VANISH_TOL vanishes on the grid (escnn's rule).
RADIUS_TOL = 1e-9
BASIS_RANK_TOL = 1e-8
BASIS_VANISH_TOL = 1e-6
