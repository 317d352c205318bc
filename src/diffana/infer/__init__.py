"""Statistical inference: fits, test statistics, asymptotic and toy-based CLs, upper
limits and look-elsewhere corrections.

pyhf's vocabulary and argument order, as pure JAX functions: every function jits,
vmaps over stacks of models of one structure, and is differentiable w.r.t. the
model's templates and the data by implicit differentiation.

Everything here works for any model that follows :class:`StatisticalModel`
(:mod:`diffana.infer.protocol`): the HistFactory ``Model``, the on/off
``CountingModel``, or a user's own. Every entry point that fits takes its start
values, bounds, fixed parameters and solver options as one :class:`FitSettings`.
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
from diffana.infer.lee import (
    ScanToys,
    global_p_value_from_toys,
    gross_vitells,
    local_p_value,
    scan_max_q0_toys,
    scan_q0,
    significance_from_p_value,
    stack_models,
    trials_factor,
    upcrossings,
)
from diffana.infer.limits import CURVE_NAMES, UpperLimitResult, upper_limit
from diffana.infer.minimize import MinimizeResult, SolverOptions, minimize
from diffana.infer.protocol import ParameterConfig, StatisticalModel
from diffana.infer.settings import FitSettings
from diffana.infer.patchsets import stacked_hypotest, stacked_upper_limit, unstack
from diffana.infer.toy_limits import ToyUpperLimitResult, upper_limit_toys
from diffana.infer.toys import ToyHypotestResult, hypotest_toys, sample_toys, toy_test_statistics

__all__ = [
    "CURVE_NAMES",
    "FitResult",
    "FitSettings",
    "HypotestResult",
    "MinimizeResult",
    "ParameterConfig",
    "ScanToys",
    "SignificanceResult",
    "SolverOptions",
    "StatisticalModel",
    "ToyHypotestResult",
    "ToyUpperLimitResult",
    "UpperLimitResult",
    "asimov_data",
    "check_converged",
    "fit",
    "fitted_asimov_data",
    "fixed_poi_fit",
    "global_p_value_from_toys",
    "gross_vitells",
    "hypotest",
    "hypotest_toys",
    "local_p_value",
    "minimize",
    "q0",
    "qmu",
    "qmu_tilde",
    "sample_toys",
    "scan_max_q0_toys",
    "scan_q0",
    "significance",
    "significance_from_p_value",
    "stack_models",
    "stacked_hypotest",
    "stacked_upper_limit",
    "toy_test_statistics",
    "trials_factor",
    "unstack",
    "upcrossings",
    "upper_limit",
    "upper_limit_toys",
]
