"""Statistical inference: fits, test statistics, asymptotic and toy-based CLs, upper
limits, look-elsewhere corrections, bump-hunt scans (``infer.bump_hunt``),
Feldman–Cousins intervals and Bayesian limits.

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
from diffana.infer.bayesian import BayesianLimitResult, bayesian_upper_limit
from diffana.infer.bump_hunt import (
    BumpHuntResult,
    FitBias,
    GlobalSignificance,
    ProfileLimits,
    WindowFits,
    fit_bias,
    fit_windows,
    global_significance,
    profile_upper_limits,
    window_data,
)
from diffana.infer.feldman_cousins import (
    FeldmanCousinsResult,
    PoissonInterval,
    feldman_cousins_interval,
    feldman_cousins_poisson,
)
from diffana.infer.expected_limits import BAND, MEDIAN, ExpectedLimits, expected_upper_limits
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
    "BayesianLimitResult",
    "BumpHuntResult",
    "CURVE_NAMES",
    "FeldmanCousinsResult",
    "FitBias",
    "FitResult",
    "FitSettings",
    "GlobalSignificance",
    "HypotestResult",
    "MinimizeResult",
    "ParameterConfig",
    "PoissonInterval",
    "ProfileLimits",
    "ScanToys",
    "SignificanceResult",
    "SolverOptions",
    "StatisticalModel",
    "ToyHypotestResult",
    "ToyUpperLimitResult",
    "UpperLimitResult",
    "WindowFits",
    "asimov_data",
    "bayesian_upper_limit",
    "check_converged",
    "feldman_cousins_interval",
    "feldman_cousins_poisson",
    "fit",
    "fit_bias",
    "fit_windows",
    "fitted_asimov_data",
    "fixed_poi_fit",
    "global_p_value_from_toys",
    "global_significance",
    "gross_vitells",
    "hypotest",
    "hypotest_toys",
    "local_p_value",
    "minimize",
    "profile_upper_limits",
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
    "expected_upper_limits",
    "ExpectedLimits",
    "MEDIAN",
    "BAND",
    "upper_limit_toys",
    "window_data",
]
