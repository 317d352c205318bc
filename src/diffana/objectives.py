"""Objectives: scalar figures of merit of a (soft) selection, to minimise or report.

From the statistical engine (``diffana.model`` / ``diffana.infer``):

* :func:`expected_upper_limit` — median expected CLs upper limit on the POI (and its
  ±1σ band) from background-only Asimov data;
* :func:`expected_cls` — expected CLs at a fixed POI value (the neos objective).

Closed-form figures of merit (no fit):

* :func:`asimov_significance` — discovery significance with a background
  uncertainty (Cowan et al.), per bin and combined;
* :func:`punzi_sensitivity` — Punzi's minimal detectable cross section s_min, with
  soft efficiencies from :func:`soft_efficiency`;
* :func:`binary_cross_entropy` — weighted, optionally class-balanced BCE.

Model builders turn histograms into a HistFactory spec (:func:`correlated_background_spec`,
:func:`uncorrelated_background_spec`), and :func:`over_masses` /
:func:`average_over_masses` evaluate one per-mass objective for every hypothesis in one
vmapped call and reduce it (mean of log by default, the natural average of limits that
span orders of magnitude).
"""

from __future__ import annotations

from typing import Callable, Literal

import equinox as eqx
import jax
import jax.numpy as jnp

# imported here, never inside a traced function: the engine creates module-level
# arrays, which would become leaked tracers if its first import happened under jit
from diffana import infer
from diffana._util import map_in_blocks, safe_sqrt

__all__ = [
    "soft_efficiency",
    "punzi_sensitivity",
    "asimov_significance",
    "binary_cross_entropy",
    "correlated_background_spec",
    "uncorrelated_background_spec",
    "expected_upper_limit",
    "expected_cls",
    "over_masses",
    "average_over_masses",
    "YIELD_FLOOR",
]

Array = jax.Array


YIELD_FLOOR = 1e-3
"""Events added to every background bin of a model built from (soft) histograms: a bin
a selection empties would otherwise give log(0) in the likelihood and a dead gradient;
10⁻³ events is negligible next to the yield of any populated bin."""


# --------------------------------------------------------------------------- closed form
def soft_efficiency(selection_weight: Array, event_weight: Array | None = None) -> Array:
    """Soft selection efficiency ``Σ w_sel·w / Σ w`` over the events of one sample.

    ``selection_weight``: (N,) soft pass weights in [0, 1]; ``event_weight``: (N,)
    generator weights (default 1). Dimensionless. Raises on an empty sample.
    """
    selection_weight = jnp.asarray(selection_weight)
    if selection_weight.shape[0] == 0:
        raise ValueError("soft_efficiency: empty sample (no events)")
    w = jnp.ones_like(selection_weight) if event_weight is None else jnp.asarray(event_weight)
    if w.shape != selection_weight.shape:
        raise ValueError(
            f"soft_efficiency: event_weight shape {w.shape} != selection_weight shape "
            f"{selection_weight.shape}"
        )
    return jnp.sum(selection_weight * w) / jnp.sum(w)


def punzi_sensitivity(
    signal_efficiency: Array,
    background: Array,
    luminosity: Array | float = 1.0,
    a: float = 3.0,
    b: float = 1.28,
) -> Array:
    """Punzi's minimal detectable cross section (see PHYSICS.md, "Punzi figure of merit").

    ``s_min = [b²/2 + a√B + (b/2)√(b² + 4a√B + 4B)] / (ε·L)``

    ``signal_efficiency`` ε (dimensionless, soft), ``background`` B (expected events
    after the selection, soft), ``luminosity`` L in fb⁻¹ → s_min in fb. ``a``, ``b``:
    one-sided Gaussian sigmas of the discovery and exclusion levels. Lower is better.
    With ε = 0 (a selection that removes every signal event) the result is +inf, and
    B = 0 gives the finite b²/(ε·L); B is clipped at 0 against round-off.
    """
    B = jnp.maximum(jnp.asarray(background, dtype=float), 0.0)
    sqrtB = safe_sqrt(B)
    numerator = b**2 / 2 + a * sqrtB + (b / 2) * jnp.sqrt(b**2 + 4 * a * sqrtB + 4 * B)
    return numerator / (signal_efficiency * luminosity)


def asimov_significance(
    signal: Array, background: Array, background_uncertainty: Array | float = 0.0, combine: bool = True
) -> Array:
    """Median discovery significance Z_A with an absolute background uncertainty σ_b.

    Cowan, Cranmer, Gross, Vitells (arXiv:1007.1727) / Cowan's note on counting
    experiments with background uncertainty:

    ``Z² = 2[(s+b) ln((s+b)(b+σ²)/(b²+(s+b)σ²)) − (b²/σ²) ln(1 + σ²s/(b(b+σ²)))]``

    which tends to ``2[(s+b) ln(1+s/b) − s]`` as σ → 0. ``signal``, ``background``
    (expected events, per bin) and ``background_uncertainty`` (events, absolute)
    broadcast together. ``combine=True`` returns √(Σ_bins Z²) (independent bins);
    otherwise Z per bin. Requires b > 0 (floor empty bins before calling).
    """
    s = jnp.asarray(signal, dtype=float)
    b = jnp.asarray(background, dtype=float)
    var = jnp.asarray(background_uncertainty, dtype=float) ** 2
    has_var = var > 0
    v = jnp.where(has_var, var, 1.0)
    term1 = (s + b) * jnp.log(jnp.where(has_var, (s + b) * (b + v) / (b**2 + (s + b) * v), (s + b) / b))
    term2 = jnp.where(has_var, b**2 / v * jnp.log1p(v * s / (b * (b + v))), s)
    z2 = 2.0 * (term1 - term2)
    if combine:
        return safe_sqrt(jnp.sum(z2))
    return safe_sqrt(z2)


def binary_cross_entropy(
    prediction: Array,
    label: Array,
    weight: Array | None = None,
    balanced: bool = False,
    from_logits: bool = False,
) -> Array:
    """Weighted mean binary cross-entropy of a classifier (dimensionless).

    ``prediction``: (N,) probabilities in (0, 1), or logits with ``from_logits=True``
    (numerically safer). ``label``: (N,) 1 for signal, 0 for background. ``weight``:
    (N,) event weights (default 1). ``balanced=True`` rescales the classes so that
    signal and background carry equal total weight (the Punzi-net pre-training).
    """
    p = jnp.asarray(prediction, dtype=float)
    y = jnp.asarray(label, dtype=float)
    if p.shape != y.shape:
        raise ValueError(f"binary_cross_entropy: prediction shape {p.shape} != label shape {y.shape}")
    if p.shape[0] == 0:
        raise ValueError("binary_cross_entropy: no events")
    w = jnp.ones_like(p) if weight is None else jnp.asarray(weight, dtype=float)
    if balanced:
        w_sig = jnp.sum(w * y)
        w_bkg = jnp.sum(w * (1 - y))
        w = w * jnp.where(y > 0.5, 0.5 / w_sig, 0.5 / w_bkg)
    if from_logits:
        # -[y log σ(z) + (1-y) log(1-σ(z))] = softplus(z) - y z
        loss = jax.nn.softplus(p) - y * p
    else:
        eps = 1e-12
        q = jnp.clip(p, eps, 1 - eps)
        loss = -(y * jnp.log(q) + (1 - y) * jnp.log1p(-q))
    return jnp.sum(w * loss) / jnp.sum(w)


# --------------------------------------------------------------------------- model specs
def _floored(yields: Array, floor: float) -> Array:
    # additive, not max(): the gradient stays alive in bins a selection emptied
    return jnp.asarray(yields, dtype=float) + floor


def correlated_background_spec(
    signal: Array,
    background: Array,
    background_up: Array,
    background_down: Array,
    *,
    yield_floor: float = YIELD_FLOOR,
    channel: str = "singlechannel",
) -> dict:
    """One-channel HistFactory spec: signal × μ ("mu") on a background whose shape and
    normalisation vary by the histosys ``correlated_bkg_uncertainty`` between the
    ``background_down`` and ``background_up`` templates (as pyhf.simplemodels).

    All yields are (B,) expected events and may be traced arrays (soft histograms).
    ``yield_floor`` (events) is added to every background template so that bins a
    selection empties stay positive (finite likelihood) and keep their gradient.
    """
    modifier = {
        "name": "correlated_bkg_uncertainty",
        "type": "histosys",
        "data": {
            "hi_data": _floored(background_up, yield_floor),
            "lo_data": _floored(background_down, yield_floor),
        },
    }
    return _signal_plus_background_spec(signal, _floored(background, yield_floor), modifier, channel)


def _signal_plus_background_spec(signal, background, background_modifier, channel):
    """One channel: signal × μ (normfactor ``mu``) plus a background with one modifier."""
    return {
        "channels": [
            {
                "name": channel,
                "samples": [
                    {
                        "name": "signal",
                        "data": jnp.asarray(signal, dtype=float),
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {"name": "background", "data": background, "modifiers": [background_modifier]},
                ],
            }
        ]
    }


def uncorrelated_background_spec(
    signal: Array,
    background: Array,
    background_uncertainty: Array,
    *,
    yield_floor: float = YIELD_FLOOR,
    channel: str = "singlechannel",
) -> dict:
    """One-channel spec: signal × μ on a background with an absolute per-bin
    uncertainty ``background_uncertainty`` (events) as a shapesys (as
    pyhf.simplemodels.uncorrelated_background). ``yield_floor`` as in
    :func:`correlated_background_spec`."""
    modifier = {
        "name": "uncorr_bkguncrt",
        "type": "shapesys",
        "data": jnp.asarray(background_uncertainty, dtype=float),
    }
    return _signal_plus_background_spec(signal, _floored(background, yield_floor), modifier, channel)


# --------------------------------------------------------------------------- engine
def expected_upper_limit(model, cl: float = 0.95, band: bool = False, *, settings=None) -> Array:
    """Median expected CLs upper limit on the POI at confidence level ``cl``.

    Computed on the background-only (POI = 0) Asimov data of ``model`` (a
    ``diffana.model.Model``), asymptotic q̃_μ, by
    :func:`diffana.infer.expected_upper_limits` (one profile fit per root-search step,
    none in the gradient; equal to ``infer.upper_limit(...).expected``). Unit: the
    POI's (signal strength μ; multiply by the nominal cross section, e.g. fb, for a
    cross-section limit). ``band=True`` returns the (3,) array (−1σ, median, +1σ)
    instead. Differentiable w.r.t. the model's templates (implicit differentiation).
    ``settings``: the fits' :class:`diffana.infer.FitSettings` (default: the
    model's suggested start values and bounds, default solver options).
    """
    nsigma = (1.0, 0.0, -1.0) if band else infer.MEDIAN
    limits = infer.expected_upper_limits(model, float(cl), nsigma, settings=settings).limits
    return limits if band else limits[0]


def expected_cls(model, poi_value: float = 1.0, test_stat: str = "qtilde", *, settings=None) -> Array:
    """Median expected CLs of the hypothesis POI = ``poi_value`` (dimensionless): the
    neos objective. Background-only Asimov data, asymptotic ``test_stat``;
    ``settings`` as in :func:`expected_upper_limit`."""
    settings = infer.FitSettings() if settings is None else settings
    return _expected_cls(model, jnp.asarray(poi_value, dtype=float), test_stat, settings)


@eqx.filter_jit
def _expected_cls(model, poi_value, test_stat, settings):
    data = infer.asimov_data(model, 0.0)
    return infer.hypotest(poi_value, data, model, test_stat=test_stat, settings=settings).cls_exp[2]


# --------------------------------------------------------------------------- masses
def over_masses(
    per_mass: Callable[[Array], Array], masses: Array, batch_size: int | None = None
) -> Array:
    """Evaluate ``per_mass(mass)`` for every hypothesis in ``masses`` (GeV) at once.

    ``batch_size=None``: one ``jax.vmap`` over all masses (fastest). With an integer,
    ``jax.lax.map`` runs vmapped blocks of that many masses in sequence, bounding
    memory for (many masses) × (many events) — still one compiled loop, no Python loop.
    Each block is rematerialised (``jax.checkpoint``) in reverse mode: otherwise the
    gradient would keep every block's activations at once and the bound would only
    hold for the forward pass.
    """
    masses = jnp.asarray(masses, dtype=float)
    if masses.ndim != 1 or masses.shape[0] == 0:
        raise ValueError(f"masses must be a non-empty 1D array, got shape {masses.shape}")
    return map_in_blocks(per_mass, (masses,), batch_size)


def average_over_masses(
    values: Array, how: Literal["mean_log", "mean", "max"] = "mean_log"
) -> Array:
    """Reduce per-mass objective values (M,) to a scalar.

    ``"mean_log"`` (default): mean of log — the log of the geometric mean, so each
    hypothesis counts by its *relative* improvement (limits span decades across
    masses). ``"mean"``: arithmetic mean. ``"max"``: worst hypothesis.
    """
    values = jnp.asarray(values)
    if how == "mean_log":
        return jnp.mean(jnp.log(values))
    if how == "mean":
        return jnp.mean(values)
    if how == "max":
        return jnp.max(values)
    raise ValueError(f"how must be 'mean_log', 'mean' or 'max', got {how!r}")
