"""Asymptotic CLs and upper limits for every member of a stack of models in one
compiled call: ``eqx.filter_vmap`` over (model, data) around :func:`hypotest` and
:func:`upper_limit`.

The stack is a :class:`~diffana.model.patchset.WorkspaceGroup` (``group.model``,
``group.data``) or any stacked model (``infer.stack_models``) with one data row per
member. Members differ in their templates, auxiliary data, fixed parameters and
bounds, but share one structure, so the program compiles once per structure and
stack size; all fits of all members run in one batched loop.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from diffana.infer.asymptotics import HypotestResult, hypotest
from diffana.infer.limits import UpperLimitResult, upper_limit
from diffana.infer.minimize import SolverOptions
from diffana.infer.protocol import StatisticalModel, check_is_model, stack_size
from diffana.infer.settings import FitSettings, resolve_settings

__all__ = ["stacked_hypotest", "stacked_upper_limit", "unstack"]


def _n_members(data, model: StatisticalModel) -> int:
    """Stack size, checked: data ``(N, nmaindata + nauxdata)``, model leaves ``(N, ...)``."""
    check_is_model(model)
    data = jnp.asarray(data)
    n = stack_size(model)
    if n is None:
        raise ValueError("expected a stacked model (a WorkspaceGroup's model or infer.stack_models); got a single model")
    width = model.config.nmaindata + model.config.nauxdata
    if data.shape != (n, width):
        raise ValueError(f"data must have one row per member, shape ({n}, {width}); got {tuple(data.shape)}")
    return n


def stacked_hypotest(
    poi_value,
    data,
    model: StatisticalModel,
    test_stat: str = "qtilde",
    calc_base_dist: str = "normal",
    options: SolverOptions | None = None,
    *,
    settings: FitSettings | None = None,
) -> HypotestResult:
    """Asymptotic CLs of every member at ``POI = poi_value`` (:func:`hypotest`).

    Args:
        poi_value: tested POI value, one for all members or one per member ``(N,)``.
        data: ``(N, nmaindata + nauxdata)`` observed counts and auxiliary data.
        model: stacked model, leaves with a leading axis of N members.

    Returns:
        A :class:`HypotestResult` whose fields have a leading member axis:
        ``cls_obs`` (N,), ``cls_exp`` (N, 5), ``converged`` (N,), …
    """
    settings = resolve_settings(settings, options=options)
    n = _n_members(data, model)
    poi_values = jnp.broadcast_to(jnp.asarray(poi_value, jnp.float64), (n,))
    return _stacked_hypotest(poi_values, jnp.asarray(data, jnp.float64), model, test_stat, calc_base_dist, settings)


@eqx.filter_jit
def _stacked_hypotest(poi_values, data, model, test_stat, calc_base_dist, settings):
    def one(poi_value, data, model):
        return hypotest(poi_value, data, model, test_stat=test_stat, calc_base_dist=calc_base_dist, settings=settings)

    return eqx.filter_vmap(one)(poi_values, data, model)


def stacked_upper_limit(
    data,
    model: StatisticalModel,
    cl: float = 0.90,
    test_stat: str = "qtilde",
    calc_base_dist: str = "normal",
    max_iterations: int = 60,
    rtol: float = 1e-10,
    options: SolverOptions | None = None,
    *,
    both_starts: bool = False,
    settings: FitSettings | None = None,
) -> UpperLimitResult:
    """Asymptotic CLs upper limits on the POI of every member (:func:`upper_limit`,
    ``both_starts`` as there).

    Returns:
        An :class:`UpperLimitResult` with a leading member axis: ``observed`` (N,),
        ``expected`` (N, 5), ``curve_converged`` (N, 6), … Index it (or use
        :func:`unstack`) before ``unconverged_curves()``.
    """
    settings = resolve_settings(settings, options=options)
    _n_members(data, model)
    return _stacked_upper_limit(jnp.asarray(data, jnp.float64), model, float(cl), test_stat, calc_base_dist,
                                int(max_iterations), float(rtol), settings, bool(both_starts))


@eqx.filter_jit
def _stacked_upper_limit(data, model, cl, test_stat, calc_base_dist, max_iterations, rtol, settings, both_starts):
    def one(data, model):
        return upper_limit(data, model, cl=cl, test_stat=test_stat, calc_base_dist=calc_base_dist,
                           max_iterations=max_iterations, rtol=rtol, settings=settings, both_starts=both_starts)

    return eqx.filter_vmap(one)(data, model)


def unstack(stacked) -> list:
    """A batched result (or model) as a list of per-member ones."""
    n = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    return [jax.tree_util.tree_map(lambda leaf: leaf[i], stacked) for i in range(n)]
