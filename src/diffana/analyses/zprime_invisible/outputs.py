"""Tables (CSV, JSON, HEPData-style YAML), g' conversion and the printed summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from diffana.analyses.zprime_invisible.config import SystematicsConfig
from diffana.analyses.zprime_invisible.selections import SELECTION_LABELS
from diffana.physics.theory import branching_fraction_invisible, coupling_upper_limit

BAND_NAMES = ("expected_minus2", "expected_minus1", "expected", "expected_plus1", "expected_plus2")

EFFICIENCY_RANGE_EDGES = SystematicsConfig.range_edges
"""M²_rec (GeV²) edges of the published systematics ranges [−0.5, 9], [9, 36], [36, 81]
(the systematics' default): the ranges over which :func:`signal_efficiency_by_range`
takes its medians."""


def add_coupling_limits(result) -> None:
    """Add g' upper limits (observed and median expected) for the vanilla Lμ−Lτ model
    (B(Z'→νν̄) from the widths) and the fully invisible one (B = 1) to every selection."""
    masses = result.masses
    b_vanilla = np.asarray(branching_fraction_invisible(masses, "vanilla"))
    for lim in result.limits.values():
        for label, b in (("vanilla", b_vanilla), ("invisible", 1.0)):
            lim[f"g_{label}"] = np.asarray(coupling_upper_limit(np.maximum(lim["observed"], 1e-12), masses, b))
            lim[f"g_expected_{label}"] = np.asarray(
                coupling_upper_limit(np.maximum(lim["expected"][:, 2], 1e-12), masses, b))


def has_limit(lim) -> np.ndarray:
    """(M,) hypotheses where a selection has a limit: its fits converged and its cut
    kept signal (with no signal left the limit is infinite and the fit reports
    unconverged at a huge POI, ~10³⁷ fb)."""
    return limit_found(lim["converged"], lim["signal_efficiency"], lim["expected"][:, 2])


def limit_found(converged, signal_efficiency, expected_fb) -> np.ndarray:
    """:func:`has_limit` from its parts, (M,) each: the fits' convergence flags, the
    signal efficiency in the window, the median expected σ_UL (fb)."""
    return np.asarray(converged, bool) & (np.asarray(signal_efficiency) > 0) & np.isfinite(expected_fb)


def summary(result) -> dict:
    """Per selection: geometric-mean median expected σ_UL (fb) and the mean ratio of its
    expected limits to (a)'s (< 1: better than (a)), over the hypotheses where *every*
    selection has a limit (:func:`has_limit`), so that the selections are compared on
    the same masses and one hypothesis without signal cannot dominate a mean;
    ``compared`` counts those hypotheses, ``no_limit`` the selection's own others."""
    common = np.all([has_limit(lim) for lim in result.limits.values()], axis=0)
    ref = result.limits["cut_based"]["expected"][common, 2]
    out = {}
    for name, lim in result.limits.items():
        mine = lim["expected"][common, 2]
        ratio = mine / ref
        out[name] = {
            "mean_expected_limit_fb": float(np.exp(np.mean(np.log(mine)))),
            "mean_ratio_to_cut_based": float(np.mean(ratio)),
            "geometric_mean_ratio_to_cut_based": float(np.exp(np.mean(np.log(ratio)))),
            "converged": int(np.sum(lim["converged"])),
            "compared": int(np.sum(common)),
            "no_limit": int(np.sum(~has_limit(lim))),
            "cut": lim["cut"],
        }
        # of the cut scan (training half); the guard's hypothesis: None when none constrains the cut
        for key in ("cut_kept_signal_fraction", "cut_at_tightest", "cut_signal_guard_mass_GeV"):
            if key in lim:
                out[name][key] = lim[key]
        if "cut_signal_guard" in lim:  # the score no cut may reach (None: no hypothesis constrains it)
            out[name]["cut_signal_guard"] = _finite_or_none(lim["cut_signal_guard"])
        if "cut_region_masses_GeV" in lim:  # one cut per mass region: the lists above are per region
            out[name]["cut_region_masses_GeV"] = lim["cut_region_masses_GeV"]
        out[name].update(signal_efficiency_by_range(result.masses, lim["signal_efficiency"]))
        if "background_mc_n_eff" in lim:
            # windows whose background after the cut rests on less than one effective MC event
            out[name]["windows_below_one_mc_event"] = int(np.sum(np.asarray(lim["background_mc_n_eff"]) < 1.0))
        if "local_significance" in lim:
            out[name].update(look_elsewhere(result.masses, lim["local_significance"]))
    return out


def _finite_or_none(value):
    """``value`` (a number, or a list of them per cut region) with inf as None (JSON)."""
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value if np.isfinite(value) else None


def signal_efficiency_by_range(masses, efficiency, edges=EFFICIENCY_RANGE_EDGES) -> dict:
    """Median signal efficiency over all hypotheses and within each M²_rec range.

    ``efficiency``: (M,) fraction of the produced signal (σ·L) that passes the
    preselection and the selection's cut and lands in the hypothesis's fit window,
    as the pipeline stores it; ``masses`` (GeV). Returns
    ``signal_efficiency_median`` and ``signal_efficiency_median_by_range``
    (``"< 9 GeV²"``, ``"9–36 GeV²"``, ``"≥ 36 GeV²"`` for the default ``edges`` →
    median). A range without a hypothesis gets NaN. The paper quotes ≈ 5%, "nearly uniform" in M²_rec.
    """
    m2 = np.asarray(masses, float) ** 2
    efficiency = np.asarray(efficiency, float)
    bounds = (-np.inf, *edges, np.inf)
    by_range = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        inside = (m2 >= lo) & (m2 < hi)
        label = f"< {hi:g} GeV²" if np.isinf(lo) else f"≥ {lo:g} GeV²" if np.isinf(hi) else f"{lo:g}–{hi:g} GeV²"
        by_range[label] = float(np.median(efficiency[inside])) if inside.any() else float("nan")
    return {"signal_efficiency_median": float(np.median(efficiency)),
            "signal_efficiency_median_by_range": by_range}


GV_REFERENCE_Z = 1.0
"""Reference level (local Z) whose up-crossings in the observed scan feed Gross–Vitells."""


def look_elsewhere(masses, local_z) -> dict:
    """Largest local excess of the scan and its global significance by Gross–Vitells,
    with the mean number of up-crossings estimated from the observed scan itself
    (its up-crossings of Z = 1; at least one, so a quiet scan is not over-sold)."""
    from diffana import infer

    local_z = np.nan_to_num(np.asarray(local_z, float))
    k = int(np.argmax(local_z))
    q_max, q_ref = local_z[k] ** 2, GV_REFERENCE_Z**2
    n_up = max(int(infer.upcrossings(local_z**2, q_ref)), 1)
    # Below the reference level the formula exceeds 1: no excess worth correcting.
    p_global = min(float(infer.gross_vitells(q_max, q_ref, n_up)), 1.0)
    z_global = max(float(infer.significance_from_p_value(p_global)), 0.0)
    return {"max_local_significance": float(local_z[k]), "mass_of_max_local_significance_GeV": float(masses[k]),
            "upcrossings_of_reference": n_up, "global_p_value": p_global, "global_significance": z_global}


def write_tables(result, output: Path, config, seed: int) -> None:
    """limits.csv, limits.json and limits_hepdata.yaml in ``output``."""
    rows = []
    for name, lim in result.limits.items():
        limit_found = has_limit(lim)
        for k, mass in enumerate(result.masses):
            row = {"selection": name, "mass_GeV": float(mass), "observed_fb": float(lim["observed"][k])}
            row.update({f"{b}_fb": float(lim["expected"][k, i]) for i, b in enumerate(BAND_NAMES)})
            row.update({"g_observed_vanilla": float(lim["g_vanilla"][k]), "g_observed_invisible": float(lim["g_invisible"][k]),
                        "g_expected_vanilla": float(lim["g_expected_vanilla"][k]),
                        "g_expected_invisible": float(lim["g_expected_invisible"][k]),
                        "signal_efficiency": float(lim["signal_efficiency"][k]),
                        "background_events": float(lim["background"][k]), "converged": bool(lim["converged"][k]),
                        # False: no limit here (fit not converged, or no signal left after the cut, when the
                        # σ columns hold the fitter's bound, ~10³⁷ fb, not a limit); never quote such a row
                        "has_limit": bool(limit_found[k])})
            if "background_mc_n_eff" in lim:
                row["background_mc_n_eff"] = float(lim["background_mc_n_eff"][k])
            if "local_significance" in lim:
                row["local_significance"] = float(lim["local_significance"][k])
            rows.append(row)
    with open(output / "limits.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    document = {"config": config.to_dict(), "seed": seed, "masses_GeV": result.masses.tolist(), "rows": rows,
                "summary": result.summary, "timings_s": result.timings,
                "histories": {k: h.to_dict() for k, h in result.histories.items()}}
    (output / "limits.json").write_text(json.dumps(document, indent=1, default=str))
    (output / "limits_hepdata.yaml").write_text(hepdata_yaml(result))


ROW_TO_LIMIT_KEY = {"observed_fb": "observed", "g_observed_vanilla": "g_vanilla", "g_observed_invisible": "g_invisible",
                    "g_expected_vanilla": "g_expected_vanilla", "g_expected_invisible": "g_expected_invisible",
                    "signal_efficiency": "signal_efficiency", "background_events": "background",
                    "converged": "converged"}
"""Per-hypothesis columns of ``limits.csv`` / ``limits.json`` rows and the key of the
pipeline's ``limits[selection]`` dict they come from (the bands: :data:`BAND_NAMES`)."""


def limits_from_rows(rows) -> tuple[np.ndarray, dict]:
    """(masses in GeV, ``limits[selection]``) rebuilt from the rows :func:`write_tables`
    wrote (``limits.json``'s ``rows``): per selection (M,) arrays under the pipeline's
    keys and ``expected`` (M, 5) σ_UL in fb (−2σ … +2σ), masses in the rows' order."""
    by_selection: dict[str, list] = {}
    for row in rows:
        by_selection.setdefault(row["selection"], []).append(row)
    masses = np.array([row["mass_GeV"] for row in next(iter(by_selection.values()))], float)
    limits = {}
    for name, selection_rows in by_selection.items():
        if not np.array_equal([row["mass_GeV"] for row in selection_rows], masses):
            raise ValueError(f"rows of selection {name!r} are not at the same masses as the first selection's")
        lim = {key: np.array([row[column] for row in selection_rows]) for column, key in ROW_TO_LIMIT_KEY.items()}
        lim["converged"] = lim["converged"].astype(bool)
        lim["expected"] = np.array([[row[f"{b}_fb"] for b in BAND_NAMES] for row in selection_rows], float)
        limits[name] = lim
    return masses, limits


def hepdata_yaml(result) -> str:
    """HEPData-style YAML table: M_Z' (GeV) against observed and expected σ_UL (fb) per selection."""
    lines = ["independent_variables:", "- header: {name: \"M_{Z'}\", units: GeV}", "  values:"]
    lines += [f"  - {{value: {m:.6g}}}" for m in result.masses]
    lines.append("dependent_variables:")
    for name, lim in result.limits.items():
        for quantity, values in (("observed", lim["observed"]), ("expected", lim["expected"][:, 2])):
            lines.append("- header: {name: \"90% CL upper limit on sigma(e+e- -> mu+mu- Z', Z' -> invisible)\", units: fb}")
            lines.append(f"  qualifiers: [{{name: selection, value: \"{SELECTION_LABELS[name]}\"}}, {{name: limit, value: {quantity}}}]")
            lines.append("  values:")
            for k, v in enumerate(values):
                if quantity == "expected":
                    e = lim["expected"][k]
                    lines.append(f"  - value: {v:.6g}")
                    lines.append(f"    errors: [{{label: 1 sigma, asymerror: {{minus: {e[1] - v:.6g}, plus: {e[3] - v:.6g}}}}}, "
                                 f"{{label: 2 sigma, asymerror: {{minus: {e[0] - v:.6g}, plus: {e[4] - v:.6g}}}}}]")
                else:
                    lines.append(f"  - {{value: {v:.6g}}}")
    return "\n".join(lines) + "\n"


def print_summary(result, console) -> None:
    """Print the mean expected limit of each selection and its improvement over (a)."""
    from rich.table import Table

    n = result.masses.size
    compared = next(iter(result.summary.values()))["compared"]
    table = Table(title=f"Z'→invisible: mean over the {compared} of {n} masses where every selection has a limit "
                        "(held-out events, same fit)")
    for column in ("selection", "⟨σ_UL⟩exp (fb, geom.)", "mean ratio to (a)", "geom. mean ratio", "improvement over (a)",
                   "converged", "no limit (no signal left)"):
        table.add_column(column)
    for name, s in result.summary.items():
        table.add_row(SELECTION_LABELS[name], f"{s['mean_expected_limit_fb']:.4g}", f"{s['mean_ratio_to_cut_based']:.3f}",
                      f"{s['geometric_mean_ratio_to_cut_based']:.3f}", f"{100 * (1 - s['geometric_mean_ratio_to_cut_based']):+.1f}%",
                      f"{s['converged']}/{n}", f"{s['no_limit']}")
    console.print(table)
    sparse = {name: s["windows_below_one_mc_event"] for name, s in result.summary.items()
              if s.get("windows_below_one_mc_event")}
    if sparse:
        console.print("windows whose background after the cut rests on < 1 effective MC event (limit near the "
                      "zero-background one): " + ", ".join(f"{SELECTION_LABELS[k]} {v}/{n}" for k, v in sparse.items()))
    efficiency = {name: s for name, s in result.summary.items() if "signal_efficiency_median" in s}
    if efficiency:
        ranges = " / ".join(next(iter(efficiency.values()))["signal_efficiency_median_by_range"])
        console.print(f"signal efficiency after the cut, in the fit window (median over masses; {ranges}; "
                      "paper: ≈ 5%): " + ", ".join(
                          f"{SELECTION_LABELS[k]} {100 * s['signal_efficiency_median']:.1f}% ("
                          + " / ".join(f"{100 * v:.1f}" for v in s["signal_efficiency_median_by_range"].values()) + ")"
                          for k, s in efficiency.items()))
    for name, s in result.summary.items():
        if "max_local_significance" in s:
            console.print(f"{SELECTION_LABELS[name]}: largest local excess {s['max_local_significance']:.2f}σ at "
                          f"{s['mass_of_max_local_significance_GeV']:.3g} GeV, global {s['global_significance']:.2f}σ "
                          f"(Gross–Vitells, {s['upcrossings_of_reference']} up-crossings of 1σ)")
    console.print(f"total time {result.timings.get('total', float('nan')):.0f} s")
