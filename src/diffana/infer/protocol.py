"""What :mod:`diffana.infer` needs from a statistical model, and nothing more.

Fits, test statistics, ``hypotest``, ``upper_limit``, ``significance``, toys, toy
limits and the look-elsewhere tools work for any model that provides the members
below — the HistFactory :class:`diffana.model.Model`, the on/off
:class:`diffana.model.CountingModel`, or a user's own ``equinox.Module``. A model is
a PyTree: its arrays are leaves (so ``jit``, ``grad`` and ``vmap`` see them), its
structure is static.

Data vectors are laid out as in pyhf: ``config.nmaindata`` main observations
(counts) followed by ``config.nauxdata`` auxiliary data (the constraint terms'
observed values).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp


@runtime_checkable
class ParameterConfig(Protocol):
    """Parameter metadata of a model (pyhf's ``model.config`` vocabulary)."""

    init: jax.Array  # (P,) suggested start values
    lower: jax.Array  # (P,) lower bounds
    upper: jax.Array  # (P,) upper bounds
    fixed: jax.Array  # (P,) bool: held at ``init`` in every fit

    @property
    def poi_index(self) -> int | None: ...

    @property
    def npars(self) -> int: ...

    @property
    def par_names(self) -> list[str]: ...

    @property
    def nmaindata(self) -> int: ...

    @property
    def nauxdata(self) -> int: ...

    @property
    def auxdata(self) -> jax.Array: ...


@runtime_checkable
class StatisticalModel(Protocol):
    """A likelihood :mod:`diffana.infer` can fit, test and limit.

    ``deviance`` is −2 ln [L(pars) / L_saturated(data)]: −2 ln L less a constant of
    the data, which the fits minimise (it can be evaluated without the cancellation
    of large terms that −2 ln L suffers at large counts); ``saturated_twice_nll``
    is that constant, so that −2 ln L = deviance + saturated_twice_nll.

    A model may also define ``deviance_gradient_and_hessian(pars, data)`` returning
    the gradient (P,) and the exact Hessian (P, P) of the deviance, when it knows a
    cheaper way than automatic differentiation (see :func:`gradient_and_hessian`).
    """

    config: ParameterConfig

    def expected_data(self, pars, include_auxdata: bool = True) -> jax.Array:
        """Expected main observations, then (by default) the auxiliary data at
        which the constraint terms peak, for parameters ``pars``."""

    def deviance(self, pars, data) -> jax.Array:
        """−2 ln [L(pars | data) / L_saturated(data)] (scalar)."""

    def saturated_twice_nll(self, data) -> jax.Array:
        """−2 ln L of the saturated model: a constant of the data (scalar)."""

    def sample_data(self, key, pars, n_toys: int) -> jax.Array:
        """``n_toys`` pseudo-data sets drawn from the full likelihood at ``pars``
        (main observations and auxiliary data), shape (n_toys, ndata)."""

    def check_data(self, data) -> jax.Array:
        """``data`` as a float64 array, with a one-line error naming what is wrong
        (length, NaN, negative counts) when it is concrete."""


def gradient_and_hessian(model: StatisticalModel, pars, data) -> tuple[jax.Array, jax.Array]:
    """Gradient (P,) and exact Hessian (P, P) of the model's deviance at ``pars``:
    the model's own structured method where it has one, else forward-over-reverse
    automatic differentiation (fine for models of tens of parameters)."""
    own = getattr(model, "deviance_gradient_and_hessian", None)
    if own is not None:
        return own(pars, data)
    pars = jnp.asarray(pars, jnp.float64)
    gradient, hvp = jax.linearize(lambda p: jax.grad(model.deviance)(p, data), pars)
    hessian = jax.vmap(hvp)(jnp.eye(pars.shape[0], dtype=pars.dtype))
    return gradient, hessian


def twice_nll(model: StatisticalModel, pars, data) -> jax.Array:
    """−2 ln L(pars | data), pyhf's normalisation: the deviance plus its constant."""
    return model.deviance(pars, data) + model.saturated_twice_nll(data)


def stack_size(model: StatisticalModel) -> int | None:
    """Number of members of a stacked model (leaves with a leading member axis, as
    built by ``infer.stack_models`` or a patchset group); None for a single model."""
    init = model.config.init
    return int(init.shape[0]) if init.ndim == 2 else None


def check_is_model(model, what: str = "model") -> None:
    """Raise a one-line TypeError if ``model`` lacks a member of the protocol."""
    missing = [
        name
        for name in ("config", "expected_data", "deviance", "saturated_twice_nll", "sample_data", "check_data")
        if not hasattr(model, name)
    ]
    if missing:
        raise TypeError(
            f"{what} of type {type(model).__name__} is not a statistical model: it lacks {', '.join(missing)} "
            "(see diffana.infer.protocol.StatisticalModel)"
        )


def poi_bounds(model: StatisticalModel) -> tuple[float, float]:
    """The POI's (lower, upper) bounds as Python floats, for argument checks
    outside ``jit``. Raises if the model has no POI."""
    poi = model.config.poi_index
    if poi is None:
        raise ValueError("this model has no parameter of interest; build it with poi_name=...")
    return float(model.config.lower[poi]), float(model.config.upper[poi])
