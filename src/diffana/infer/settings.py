"""One settings object for every fit: start values, bounds, fixed parameters and
the solver's options.

Every entry point of :mod:`diffana.infer` that fits (``fit``, ``hypotest``,
``upper_limit``, ``significance``, toys, scans) takes ``settings=FitSettings(...)``,
so a user changes a start value or a tolerance in one place. pyhf's keyword
arguments (``init_pars``, ``par_bounds``, ``fixed_params``) are accepted too where
pyhf has them, and become a ``FitSettings`` in :func:`resolve_settings`.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from diffana.infer.minimize import SolverOptions


def _optional_floats(value):
    return None if value is None else jnp.asarray(value, jnp.float64)


def _optional_bools(value):
    return None if value is None else jnp.asarray(value, bool)


class FitSettings(eqx.Module):
    """What the fits of one inference call start from and respect.

    Attributes:
        init_pars: start values (P,); default: the model's suggested ones.
        par_bounds: (P, 2) lower and upper bounds; default: the model's.
        fixed_params: (P,) bool, parameters held at their start value, in addition
            to those the model itself fixes (e.g. shapesys bins without uncertainty).
        solver: the Newton solver's options (iterations, tolerance).

    Arrays are leaves (a ``FitSettings`` can be traced, vmapped and differentiated
    through its start values); ``solver`` is static.
    """

    init_pars: jax.Array | None = eqx.field(default=None, converter=_optional_floats)
    par_bounds: jax.Array | None = eqx.field(default=None, converter=_optional_floats)
    fixed_params: jax.Array | None = eqx.field(default=None, converter=_optional_bools)
    solver: SolverOptions = eqx.field(static=True, default=SolverOptions())

    def resolve(self, config) -> "ParameterSetup":
        """The start values, bounds and fixed mask of ``config`` with these
        settings applied (a model's own fixed parameters stay fixed)."""
        init = config.init if self.init_pars is None else self.init_pars
        if self.par_bounds is None:
            lower, upper = config.lower, config.upper
        else:
            lower, upper = self.par_bounds[..., 0], self.par_bounds[..., 1]
        fixed = config.fixed if self.fixed_params is None else self.fixed_params | config.fixed
        return ParameterSetup(init=init, lower=lower, upper=upper, fixed=fixed)


class ParameterSetup(NamedTuple):
    """Start values, bounds and the fixed mask of a fit, each (P,)."""

    init: jax.Array
    lower: jax.Array
    upper: jax.Array
    fixed: jax.Array


def resolve_settings(
    settings: FitSettings | None = None,
    init_pars=None,
    par_bounds=None,
    fixed_params=None,
    options: SolverOptions | None = None,
) -> FitSettings:
    """One :class:`FitSettings` from either a settings object or pyhf's keyword
    arguments (and ``options``) — not both, which would be ambiguous."""
    given = [name for name, value in (("init_pars", init_pars), ("par_bounds", par_bounds),
                                      ("fixed_params", fixed_params), ("options", options)) if value is not None]
    if settings is None:
        return FitSettings(init_pars, par_bounds, fixed_params, options if options is not None else SolverOptions())
    if not isinstance(settings, FitSettings):
        raise TypeError(f"settings must be a diffana.infer.FitSettings, got {type(settings).__name__}")
    if given:
        raise ValueError(f"pass either settings=FitSettings(...) or {', '.join(given)}, not both")
    return settings


def check_against_model(settings: FitSettings, config) -> None:
    """One-line errors for settings whose shapes do not match the model's
    parameters (checked outside ``jit``; the shapes are static)."""
    n = config.init.shape[-1]
    for name, value, shape in (("init_pars", settings.init_pars, (n,)), ("par_bounds", settings.par_bounds, (n, 2)),
                               ("fixed_params", settings.fixed_params, (n,))):
        if value is not None and tuple(value.shape[-len(shape):]) != shape:
            raise ValueError(f"{name} has shape {tuple(value.shape)}, but the model has {n} parameters "
                             f"(expected {shape})")
