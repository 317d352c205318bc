"""Parametric shapes normalised on a range, with exact bin integrals.

Every shape is an :class:`equinox.Module` whose parameters and normalisation range
``[lower, upper]`` are JAX array leaves, with ``pdf``, ``log_pdf``, ``cdf``, ``sf`` and
``bin_integrals`` (CDF differences in cancellation-free forms, not midpoint sampling),
all jit-, vmap- and grad-able. See docs/shapes.md for the parametrisations, the
accuracy of the bin integrals and the zfit/RooFit names.
"""

from diffana.shapes.base import Shape, ShapeError, stack
from diffana.shapes.crystal_ball import (
    CrystalBall,
    CrystalBallSum,
    DoubleCrystalBall,
    DoubleCrystalBallSum,
)
from diffana.shapes.gaussian import Gaussian
from diffana.shapes.polynomials import (
    Bernstein,
    Chebyshev,
    bernstein_basis,
    bernstein_basis_integrals,
)

__all__ = [
    "Bernstein",
    "Chebyshev",
    "CrystalBall",
    "CrystalBallSum",
    "DoubleCrystalBall",
    "DoubleCrystalBallSum",
    "Gaussian",
    "Shape",
    "ShapeError",
    "bernstein_basis",
    "bernstein_basis_integrals",
    "stack",
]
