"""A binned bump-hunt likelihood: a parametric signal shape on a free polynomial
background in one fit window.

The main data are the counts ``n_b`` of one observable (a mass, in GeV say) in the
``B`` bins of a fit window with edges ``x_0 < … < x_B``. The expected count per bin is

    λ_b = s · a · ε(α_ε) · f_b(α_m, α_r) + Σ_k c_k · I_bk

- ``s``: the parameter of interest; ``a`` (``signal_per_poi``) the expected signal
  events in the window per unit of POI (1 by default, so that ``s`` is the signal
  yield in events; luminosity × efficiency for a cross-section POI);
- ``f_b``: the probability per bin of a signal shape of :mod:`diffana.shapes`
  normalised on the window (so ``Σ_b f_b = 1``: ``s·a`` is the signal *in the
  window*), with its centre and width moved by the mass-scale and resolution
  nuisances: ``mean → mean + α_m·σ_m`` (σ_m in the observable's units) and
  ``sigma → sigma·(1 + α_r·σ_r)`` (σ_r relative);
- ``ε(α_ε) = 1 + α_ε·σ_ε`` (``efficiency_form="normal"``) or ``(1 + σ_ε)^α_ε``
  (``"lognormal"``), σ_ε relative;
- ``I_bk``: the fraction of the k-th Bernstein basis polynomial of degree ``n`` on
  the window that falls in bin b (``Σ_b I_bk = 1``), so each coefficient ``c_k`` is
  in *events* and ``Σ_k c_k`` is the background in the window. ``c_k ≥ 0`` (their
  bounds) keeps the background non-negative everywhere in the window: sufficient,
  not necessary (see docs/parametric_model.md).

Each nuisance is optional (given by its width) and is a unit-Gaussian pull
``alpha_<name>`` with auxiliary datum 0 (pyhf's normsys convention), so data
vectors are ``[n_1 … n_B, a_1 … a_K]`` and parameter vectors ``[s, c_0 … c_n,
alpha_… ]``.

The likelihood is Π_b Poisson(n_b; λ_b) · Π_k N(a_k; α_k, 1). Signed signal yields
are allowed (a bump hunt's local significance needs them), so ``λ_b`` could reach
zero or below; the model's rate is ``max(λ_b, RATE_FLOOR)`` (see :data:`RATE_FLOOR`).

The model implements :class:`diffana.infer.protocol.StatisticalModel`. Its arrays
(edges, the basis integrals, the shape's parameters, the widths, the config's
arrays) are leaves and its names and sizes static, so models of one bin count,
degree and nuisance set stack (:meth:`ParametricModel.stack`,
``infer.stack_models``, or build under ``jax.vmap``, see :func:`sliding_windows`)
and ``jax.vmap(infer.fit)`` fits thousands of windows in one call.
"""

from diffana.model.parametric.config import PULL_BOUNDS, ParametricConfig, bernstein_bin_fractions
from diffana.model.parametric.model import EFFICIENCY_FORMS, RATE_FLOOR, ParametricModel
from diffana.model.parametric.windows import Windows, sliding_windows, window_starts

__all__ = [
    "EFFICIENCY_FORMS",
    "PULL_BOUNDS",
    "RATE_FLOOR",
    "ParametricConfig",
    "ParametricModel",
    "Windows",
    "bernstein_bin_fractions",
    "sliding_windows",
    "window_starts",
]
