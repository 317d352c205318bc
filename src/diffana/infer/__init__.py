"""Statistical inference: fits, test statistics, asymptotic CLs and upper limits.

pyhf's vocabulary and argument order, as pure JAX functions: every function jits,
vmaps over stacks of models of one structure, and is differentiable w.r.t. the
model's templates and the data by implicit differentiation.
"""

from diffana.infer.asymptotics import (
    HypotestResult,
    SignificanceResult,
    hypotest,
    q0,
    qmu,
    qmu_tilde,
    significance,
)
from diffana.infer.fit import (
    FitResult,
    asimov_data,
    check_converged,
    fit,
    fitted_asimov_data,
    fixed_poi_fit,
)
from diffana.infer.limits import UpperLimitResult, upper_limit
from diffana.infer.minimize import MinimizeResult, SolverOptions, minimize

__all__ = [
    "FitResult",
    "HypotestResult",
    "MinimizeResult",
    "SignificanceResult",
    "SolverOptions",
    "UpperLimitResult",
    "asimov_data",
    "check_converged",
    "fit",
    "fitted_asimov_data",
    "fixed_poi_fit",
    "hypotest",
    "minimize",
    "q0",
    "qmu",
    "qmu_tilde",
    "significance",
    "upper_limit",
]
