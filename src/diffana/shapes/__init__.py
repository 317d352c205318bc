"""Parametric shapes normalised on a range, with exact bin integrals.

Every shape is an :class:`equinox.Module` whose parameters and normalisation range
``[lower, upper]`` are JAX array leaves, with ``pdf``, ``log_pdf``, ``cdf``, ``sf`` and
``bin_integrals`` (CDF differences in cancellation-free forms, not midpoint sampling),
all jit-, vmap- and grad-able. See docs/shapes.md for the parametrisations, the
accuracy of the bin integrals and the zfit/RooFit names.
"""

from diffana.shapes.base import Shape, ShapeError, stack
from diffana.shapes.breit_wigner import BreitWigner, Voigtian, faddeeva
from diffana.shapes.crystal_ball import (
    CrystalBall,
    CrystalBallSum,
    DoubleCrystalBall,
    DoubleCrystalBallSum,
)
from diffana.shapes.exponential import Exponential
from diffana.shapes.gaussian import Gaussian
from diffana.shapes.interpolation import interpolate, interpolate_parameters
from diffana.shapes.kde import KDE
from diffana.shapes.polynomials import (
    Bernstein,
    Chebyshev,
    bernstein_basis,
    bernstein_basis_integrals,
)

__all__ = [
    "Bernstein",
    "BreitWigner",
    "Chebyshev",
    "CrystalBall",
    "CrystalBallSum",
    "DoubleCrystalBall",
    "DoubleCrystalBallSum",
    "Exponential",
    "Gaussian",
    "KDE",
    "Shape",
    "ShapeError",
    "Voigtian",
    "bernstein_basis",
    "bernstein_basis_integrals",
    "faddeeva",
    "interpolate",
    "interpolate_parameters",
    "stack",
]
