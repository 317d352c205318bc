"""The binned fit of one mass hypothesis and the vmapped scan over all of them.

One model structure for every hypothesis (same bins, samples, modifiers), built
*inside* the vmapped function from stacked templates, so the limit is compiled once
and reused for every selection and every call:

- ``signal`` (events per unit POI): normfactor ``sigma`` (the POI, in units of the
  hypothesis' reference cross section ``sigma_ref`` fb, so fits see O(1) values),
  normsys ``signal_efficiency`` (by M² range), normsys ``luminosity``, histosys
  ``signal_shape`` (peak width ± the configured fraction);
- ``background`` (all processes summed): normfactor ``background_norm`` (free),
  shapesys ``background_shape`` (per bin, uncorrelated, by M² range), histosys
  ``photon_veto`` (the μμ(γ) part scaled by its photon-veto uncertainty).

σ_UL (fb) = μ_UL · sigma_ref.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from diffana import infer
from diffana.model import Model

YIELD_FLOOR = 1e-3
"""Events added to every background bin: keeps emptied bins finite and differentiable."""

TEMPLATE_KEYS = ("signal", "signal_up", "signal_down", "background", "background_mumu")
PER_HYPOTHESIS_KEYS = ("signal_efficiency", "background_shape", "photon_veto", "sigma_ref")


def by_range(m2, edges, values):
    """Piecewise-constant value by M² range (GeV²): values[0] below edges[0], values[1]
    up to edges[1], values[2] above."""
    m2 = jnp.asarray(m2)
    return jnp.where(m2 < edges[0], values[0], jnp.where(m2 < edges[1], values[1], values[2]))


def hypothesis_model(t: dict, luminosity_uncertainty: float, poi_max: float = 1000.0) -> Model:
    """The model of one hypothesis from its templates ``t`` (arrays of one window:
    see :data:`TEMPLATE_KEYS` (events, signal per unit POI) and
    :data:`PER_HYPOTHESIS_KEYS`). Arrays may be tracers."""
    background = t["background"] + YIELD_FLOOR
    veto_shift = t["photon_veto"] * t["background_mumu"]
    scale = t["sigma_ref"]
    spec = {
        "channels": [
            {
                "name": "window",
                "samples": [
                    {
                        "name": "signal",
                        "data": t["signal"] * scale,
                        "modifiers": [
                            {"name": "sigma", "type": "normfactor", "data": None},
                            {"name": "signal_efficiency", "type": "normsys",
                             "data": {"hi": 1.0 + t["signal_efficiency"], "lo": 1.0 - t["signal_efficiency"]}},
                            {"name": "luminosity", "type": "normsys",
                             "data": {"hi": 1.0 + luminosity_uncertainty, "lo": 1.0 - luminosity_uncertainty}},
                            {"name": "signal_shape", "type": "histosys",
                             "data": {"hi_data": t["signal_up"] * scale, "lo_data": t["signal_down"] * scale}},
                        ],
                    },
                    {
                        "name": "background",
                        "data": background,
                        "modifiers": [
                            {"name": "background_norm", "type": "normfactor", "data": None},
                            {"name": "background_shape", "type": "shapesys", "data": t["background_shape"] * background},
                            {"name": "photon_veto", "type": "histosys",
                             "data": {"hi_data": background + veto_shift,
                                      "lo_data": jnp.maximum(background - veto_shift, YIELD_FLOOR)}},
                        ],
                    },
                ],
            }
        ]
    }
    return Model.from_spec(spec, poi_name="sigma", parameters=[{"name": "sigma", "bounds": [[0.0, poi_max]]}])


def hypothesis_limits(t: dict, observed_counts, luminosity_uncertainty: float, cl: float):
    """(observed σ_UL, expected σ_UL (5,), converged) in fb for one hypothesis;
    ``observed_counts`` are the (pseudo-)data in the window's bins."""
    model = hypothesis_model(t, luminosity_uncertainty)
    data = jnp.concatenate([observed_counts, model.config.auxdata])
    result = infer.upper_limit(data, model, cl=cl)
    return result.observed * t["sigma_ref"], result.expected * t["sigma_ref"], result.converged


def expected_median_limit(t: dict, luminosity_uncertainty: float, cl: float):
    """Median expected σ_UL (fb) of one hypothesis from background-only Asimov data;
    differentiable w.r.t. the templates (the training objective of selection (d))."""
    model = hypothesis_model(t, luminosity_uncertainty)
    data = infer.asimov_data(model, poi_value=0.0)
    return infer.upper_limit(data, model, cl=cl).expected[2] * t["sigma_ref"]


_SCANS: dict = {}


def scan_limits(templates: dict, observed_counts, luminosity_uncertainty: float, cl: float):
    """All hypotheses in ONE vmapped, jitted call: ``templates`` maps every key of
    :data:`TEMPLATE_KEYS` and :data:`PER_HYPOTHESIS_KEYS` to (M, ...) arrays,
    ``observed_counts`` is (M, bins). Returns numpy (observed (M,), expected (M, 5),
    converged (M,)), σ in fb. The compiled function is cached per (uncertainty, cl)."""
    key = (float(luminosity_uncertainty), float(cl))
    if key not in _SCANS:
        _SCANS[key] = jax.jit(jax.vmap(lambda t, d: hypothesis_limits(t, d, key[0], key[1])))
    t = {k: jnp.asarray(templates[k], jnp.float64) for k in (*TEMPLATE_KEYS, *PER_HYPOTHESIS_KEYS)}
    observed, expected, converged = _SCANS[key](t, jnp.asarray(observed_counts, jnp.float64))
    return np.asarray(observed), np.asarray(expected), np.asarray(converged)


def hypothesis_significance(t: dict, observed_counts, luminosity_uncertainty: float):
    """(local significance Z = √q0, converged) of an excess at one hypothesis in the
    (pseudo-)data ``observed_counts``."""
    model = hypothesis_model(t, luminosity_uncertainty)
    data = jnp.concatenate([observed_counts, model.config.auxdata])
    result = infer.significance(data, model)
    return result.observed, result.converged


_SIGNIFICANCE_SCANS: dict = {}


def scan_local_significance(templates: dict, observed_counts, luminosity_uncertainty: float):
    """Local significance of every hypothesis in one vmapped call (arguments as
    :func:`scan_limits`). Returns numpy (Z (M,), converged (M,))."""
    key = float(luminosity_uncertainty)
    if key not in _SIGNIFICANCE_SCANS:
        _SIGNIFICANCE_SCANS[key] = jax.jit(jax.vmap(lambda t, d: hypothesis_significance(t, d, key)))
    t = {k: jnp.asarray(templates[k], jnp.float64) for k in (*TEMPLATE_KEYS, *PER_HYPOTHESIS_KEYS)}
    z, converged = _SIGNIFICANCE_SCANS[key](t, jnp.asarray(observed_counts, jnp.float64))
    return np.asarray(z), np.asarray(converged)
