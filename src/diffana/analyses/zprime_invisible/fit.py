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

Masked bins (``bin_mask`` = 0, the padding θ bins of hypotheses with fewer θ bins
than the widest, see :func:`templates.theta_bin_counts`) have zero expected events in
every sample and every variation, zero observed events, and their per-bin
``background_shape`` parameter is fixed (the builder fixes a shapesys bin of zero
nominal): log Poisson(0 | 0) = 0 and the fixed constraint sits at its auxiliary
value, so a masked bin adds exactly nothing to the deviance and the limits equal
those of the model without the bin.

Scans run chunk by chunk (a chunk holds ``chunk_bins // bins`` hypotheses, the
last one padded by repeating its last hypothesis): a compiled program serves every
call of its structure — the cut tries of every selection and the held-out scans —
whatever their number of hypotheses; a vmapped while-loop only waits for the slowest
fit of its own chunk; memory stays bounded. Structures (:attr:`ScanSettings.structure`):

- ``"grouped"`` (default): hypotheses with the same ``bin_mask`` form one group, whose
  padding bins are dropped before the fit — one compiled program per θ-bin count
  (1–5). The fit's dense Newton solve costs ∝ (parameters)³ and the per-bin
  shapesys gives one parameter per bin, so a 100-bin padded model costs ≈ 40× a
  20-bin one (measured: 28 ms per hypothesis at 20 bins, 274 ms at 60 bins).
- ``"padded"``: every hypothesis in ONE compiled program at the padded width, the
  masked bins contributing nothing (identical limits, see above; far slower when
  most hypotheses use few θ bins).

Several devices (:attr:`ScanSettings.mesh`, or ``mesh=`` of the scans): a chunk then
holds ``chunk_bins // bins`` hypotheses *per device* of the mesh's ``"hypotheses"``
axis, and each device fits its own block of the chunk
(:func:`diffana.sharding.map_shards`); the limits equal the single-device ones
(docs/devices.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from diffana import infer, sharding
from diffana.model import Model
from diffana.objectives import YIELD_FLOOR  # events added to every background bin

TEMPLATE_KEYS = ("signal", "signal_up", "signal_down", "background", "background_mumu")
PER_HYPOTHESIS_KEYS = ("signal_efficiency", "background_shape", "photon_veto", "sigma_ref")
OPTIONAL_KEYS = ("bin_mask",)
"""``bin_mask`` (bins,): 1 for a real bin, 0 for a padding bin; all ones when absent."""

DEFAULT_CHUNK_BINS = 640
"""Hypotheses × bins per compiled call of a scan (32 hypotheses of 20 bins)."""

SCAN_STRUCTURES = ("grouped", "padded")


class ScanSettings(NamedTuple):
    """Settings of the limit and significance scans (see the module docstring)."""

    luminosity_uncertainty: float  # relative (0.01 = 1%)
    cl: float = 0.90  # confidence level of the upper limits
    chunk_bins: int = DEFAULT_CHUNK_BINS  # hypotheses × bins per compiled call
    structure: str = "grouped"  # one of SCAN_STRUCTURES
    mesh: jax.sharding.Mesh | None = None  # split each chunk over this mesh's "hypotheses" devices


def by_range(m2, edges, values):
    """Piecewise-constant value by M² range (GeV²): values[0] below edges[0], values[1]
    up to edges[1], values[2] above."""
    m2 = jnp.asarray(m2)
    return jnp.where(m2 < edges[0], values[0], jnp.where(m2 < edges[1], values[1], values[2]))


def hypothesis_model(t: dict, luminosity_uncertainty: float, poi_max: float = 1000.0) -> Model:
    """The model of one hypothesis from its templates ``t`` (arrays of one window:
    see :data:`TEMPLATE_KEYS` (events, signal per unit POI) and
    :data:`PER_HYPOTHESIS_KEYS`, optionally ``bin_mask``). Arrays may be tracers."""
    mask = t.get("bin_mask", jnp.ones_like(t["background"]))
    # the yield floor only goes into real bins: a padding bin stays exactly empty
    background = (t["background"] + YIELD_FLOOR) * mask
    veto_shift = t["photon_veto"] * t["background_mumu"] * mask
    scale = t["sigma_ref"] * mask
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
                                      "lo_data": jnp.maximum(background - veto_shift, YIELD_FLOOR * mask)}},
                        ],
                    },
                ],
            }
        ]
    }
    return Model.from_spec(spec, poi_name="sigma", parameters=[{"name": "sigma", "bounds": [[0.0, poi_max]]}])


def hypothesis_limits(t: dict, observed_counts, luminosity_uncertainty: float, cl: float,
                      both_starts: bool = False):
    """(observed σ_UL, expected σ_UL (5,), converged) in fb for one hypothesis;
    ``observed_counts`` are the (pseudo-)data in the window's bins. ``both_starts``:
    every conditional fit from the cold and the warm start, the lower minimum kept
    (:func:`diffana.infer.upper_limit`; the scan's retry of unconverged hypotheses)."""
    model = hypothesis_model(t, luminosity_uncertainty)
    data = jnp.concatenate([observed_counts, model.config.auxdata])
    result = infer.upper_limit(data, model, cl=cl, both_starts=both_starts)
    return result.observed * t["sigma_ref"], result.expected * t["sigma_ref"], result.converged


def expected_median_limit(t: dict, luminosity_uncertainty: float, cl: float):
    """Median expected σ_UL (fb) of one hypothesis from background-only Asimov data;
    differentiable w.r.t. the templates (the training objective of selection (d))."""
    model = hypothesis_model(t, luminosity_uncertainty)
    # the Asimov-only solver: equal to upper_limit(asimov_data(model, 0), ...).expected[2]
    # at one profile fit per root step instead of seven, and no fit in the gradient
    return infer.expected_upper_limits(model, cl).limits[0] * t["sigma_ref"]


def _stacked(templates: dict) -> dict:
    """The model inputs of every hypothesis as float64 numpy (M, ...) arrays
    (``bin_mask`` all ones where the templates have none)."""
    t = {k: np.asarray(templates[k], np.float64) for k in (*TEMPLATE_KEYS, *PER_HYPOTHESIS_KEYS)}
    t["bin_mask"] = np.asarray(templates.get("bin_mask", np.ones_like(t["background"])), np.float64)
    return t


def structure_groups(bin_mask, structure: str = "grouped") -> list:
    """(rows, kept bins) per compiled structure: ``"grouped"``, one group per distinct
    ``bin_mask`` row keeping its real bins; ``"padded"``, one group of every row
    keeping every bin."""
    mask = np.asarray(bin_mask) > 0
    if structure == "padded":
        return [(np.arange(mask.shape[0]), np.arange(mask.shape[1]))]
    if structure != "grouped":
        raise ValueError(f"unknown scan structure {structure!r}; known: {list(SCAN_STRUCTURES)}")
    patterns, inverse = np.unique(mask, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    return [(np.flatnonzero(inverse == g), np.flatnonzero(p)) for g, p in enumerate(patterns)]


def _select(t: dict, rows, bins) -> dict:
    """Rows ``rows`` of every array and, of the per-bin (M, bins) arrays, the bins ``bins``."""
    return {k: (v[rows][:, bins] if v.ndim == 2 else v[rows]) for k, v in t.items()}


def _chunks(n: int, chunk_size: int):
    """(start, stop) of each chunk of ``chunk_size`` rows covering ``n`` rows."""
    return [(i, min(i + chunk_size, n)) for i in range(0, n, chunk_size)]


def _padded_rows(tree, start: int, stop: int, chunk_size: int):
    """Rows start:stop of every (M, ...) array of ``tree``, padded to ``chunk_size``
    rows by repeating row stop − 1 (a real hypothesis, so the fits stay well posed)."""
    rows = np.minimum(np.arange(start, start + chunk_size), stop - 1)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a[rows]), tree)


def _run_group(compiled, t: dict, d: np.ndarray, chunk_bins: int, mesh=None) -> list:
    """``compiled`` on one structure's hypotheses, chunk by chunk; numpy outputs.
    With a mesh, a chunk holds ``chunk_bins // bins`` hypotheses per device of its
    ``"hypotheses"`` axis and is placed there before the call."""
    n, bins = d.shape
    shards = 1 if mesh is None else sharding.shard_count(mesh, sharding.HYPOTHESES)
    chunk_size = max(1, chunk_bins // bins) * shards
    pieces = []
    for start, stop in _chunks(n, chunk_size):
        chunk = (_padded_rows(t, start, stop, chunk_size), _padded_rows(d, start, stop, chunk_size))
        if mesh is not None:
            chunk = sharding.shard_hypotheses(chunk, mesh).stack
        out = sharding.gather(compiled(*chunk))  # numpy, from every host's devices
        pieces.append([o[: stop - start] for o in out])
    return [np.concatenate(parts) for parts in zip(*pieces)]


def run_chunked(compiled, templates: dict, observed_counts, chunk_bins: int = DEFAULT_CHUNK_BINS,
                structure: str = "grouped", mesh=None):
    """``compiled(t, d)`` (a jitted vmap over hypotheses; with ``mesh``, its
    :func:`_on_devices` form for that mesh) on every hypothesis, by structure group
    (:func:`structure_groups`) and chunk; the numpy outputs in the original
    hypothesis order."""
    t, d = _stacked(templates), np.asarray(observed_counts, np.float64)
    outputs = None
    for rows, bins in structure_groups(t["bin_mask"], structure):
        group = _run_group(compiled, _select(t, rows, bins), d[rows][:, bins], int(chunk_bins), mesh)
        if outputs is None:
            outputs = [np.zeros((d.shape[0], *g.shape[1:]), g.dtype) for g in group]
        for out, g in zip(outputs, group):
            out[rows] = g
    return tuple(outputs)


def expected_median_limits(t: dict, luminosity_uncertainty: float, cl: float):
    """(M,) median expected σ_UL (fb) of every hypothesis of the stacked templates ``t``,
    each structure group (:func:`structure_groups`, from the concrete numpy
    ``bin_mask``) in its own vmap without its padding bins; differentiable w.r.t. the
    templates (the training objective of selection (d))."""
    n = jnp.shape(t["signal"])[0]
    mask = np.asarray(t.get("bin_mask", np.ones(jnp.shape(t["background"]))))
    limits = jnp.zeros(n)
    for rows, bins in structure_groups(mask):
        group = {k: (v[rows][:, bins] if jnp.ndim(v) == 2 else v[rows])
                 for k, v in t.items() if k != "bin_mask"}
        limits = limits.at[rows].set(jax.vmap(lambda tk: expected_median_limit(tk, luminosity_uncertainty, cl))(group))
    return limits


def _on_devices(vmapped, mesh):
    """The jitted ``vmapped`` (a vmap over hypotheses): on one device, or with each
    device of ``mesh``'s ``"hypotheses"`` axis running it on its own block of the
    chunk (:func:`diffana.sharding.map_shards`: its fits' while loops run to the end
    on each device, with no communication)."""
    return jax.jit(vmapped if mesh is None else sharding.map_shards(vmapped, mesh))


_SCANS: dict = {}


def _compiled_limit_scan(luminosity_uncertainty: float, cl: float, mesh=None, both_starts: bool = False):
    """The jitted, vmapped :func:`hypothesis_limits`, one per (uncertainty, cl, mesh,
    both_starts)."""
    key = (float(luminosity_uncertainty), float(cl), mesh, bool(both_starts))
    if key not in _SCANS:
        _SCANS[key] = _on_devices(jax.vmap(lambda t, d: hypothesis_limits(t, d, key[0], key[1], key[3])), mesh)
    return _SCANS[key]


def _retry_unconverged(outputs, templates: dict, observed_counts, luminosity_uncertainty: float, cl: float,
                       chunk_bins: int, structure: str, mesh):
    """The scan's ``outputs`` (observed, expected, converged) with every unconverged
    hypothesis refitted with both starts (:func:`hypothesis_limits`), its limits
    replaced where the retry converged.

    Why: where a hypothesis' conditional fits have two minima (seen in the
    ``signal_shape`` width histosys of signal templates of a few MC events per bin),
    the cold-started fit lands in the higher one at some μ, CLs jumps across the
    level there and the cold search ends at the jump unconverged (60 root steps
    that hold up its whole chunk). Refitting only those keeps the scan's cost and
    its hypotest-like cold starts everywhere else; the both-starts program is
    compiled only when a scan needs it."""
    observed, expected, converged = outputs
    retry = np.flatnonzero(~np.asarray(converged, bool))
    if retry.size == 0:
        return outputs
    subset = {k: v[retry] for k, v in _stacked(templates).items()}
    compiled = _compiled_limit_scan(luminosity_uncertainty, cl, mesh, both_starts=True)
    r_observed, r_expected, r_converged = run_chunked(compiled, subset, np.asarray(observed_counts)[retry],
                                                      chunk_bins, structure, mesh)
    kept = np.asarray(r_converged, bool)
    fixed = retry[kept]
    observed, expected, converged = observed.copy(), expected.copy(), converged.copy()
    observed[fixed], expected[fixed], converged[fixed] = r_observed[kept], r_expected[kept], True
    return observed, expected, converged


def scan_limits(templates: dict, observed_counts, luminosity_uncertainty: float, cl: float,
                chunk_bins: int = DEFAULT_CHUNK_BINS, structure: str = "grouped", mesh=None):
    """Limits of all hypotheses, vmapped and compiled once per structure, run chunk by
    chunk (module docstring): ``templates`` maps every key of :data:`TEMPLATE_KEYS` and
    :data:`PER_HYPOTHESIS_KEYS` (and optionally ``bin_mask``) to (M, ...) arrays,
    ``observed_counts`` is (M, bins). ``mesh``: split each chunk's hypotheses over
    the devices of its ``"hypotheses"`` axis (:func:`diffana.sharding.device_mesh`).
    Unconverged hypotheses are refitted from two starts (:func:`_retry_unconverged`).
    Returns numpy (observed (M,), expected (M, 5), converged (M,)), σ in fb."""
    compiled = _compiled_limit_scan(luminosity_uncertainty, cl, mesh)
    outputs = run_chunked(compiled, templates, observed_counts, chunk_bins, structure, mesh)
    return _retry_unconverged(outputs, templates, observed_counts, luminosity_uncertainty, cl, chunk_bins,
                              structure, mesh)


def scan_limits_with(settings: ScanSettings, templates: dict, observed_counts):
    """:func:`scan_limits` with its settings in one :class:`ScanSettings`."""
    return scan_limits(templates, observed_counts, settings.luminosity_uncertainty, settings.cl,
                       settings.chunk_bins, settings.structure, settings.mesh)


def hypothesis_significance(t: dict, observed_counts, luminosity_uncertainty: float):
    """(local significance Z = √q0, converged) of an excess at one hypothesis in the
    (pseudo-)data ``observed_counts``."""
    model = hypothesis_model(t, luminosity_uncertainty)
    data = jnp.concatenate([observed_counts, model.config.auxdata])
    result = infer.significance(data, model)
    return result.observed, result.converged


_SIGNIFICANCE_SCANS: dict = {}


def scan_local_significance(templates: dict, observed_counts, luminosity_uncertainty: float,
                            chunk_bins: int = DEFAULT_CHUNK_BINS, structure: str = "grouped", mesh=None):
    """Local significance of every hypothesis, vmapped and run as :func:`scan_limits`
    (``mesh`` too). Returns numpy (Z (M,), converged (M,))."""
    key = (float(luminosity_uncertainty), mesh)
    if key not in _SIGNIFICANCE_SCANS:
        _SIGNIFICANCE_SCANS[key] = _on_devices(jax.vmap(lambda t, d: hypothesis_significance(t, d, key[0])), mesh)
    return run_chunked(_SIGNIFICANCE_SCANS[key], templates, observed_counts, chunk_bins, structure, mesh)
