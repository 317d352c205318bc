"""``run_analysis``: the whole Z'→invisible search, from events to limits, plots, tables.

Steps (each reported with a rich progress bar or status line): samples →
hypotheses and windows → the four selections (training on the training half) →
hard cuts chosen on the training half (all tries of a selection in one chunked scan
over ``training.cut_masses`` hypotheses, :mod:`cuts`) → limits for every hypothesis on
the held-out half in one chunked, vmapped scan per selection (expected band + observed
on pseudo-data; one compiled program serves every scan) →
g' limits (vanilla, fully invisible) → tables, plots, summary.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.progress import Progress
from scipy.special import logit

from diffana.analyses.zprime_invisible import cuts
from diffana.analyses.zprime_invisible import selections as sel
from diffana.analyses.zprime_invisible.config import Config
from diffana.analyses.zprime_invisible.fit import ScanSettings, scan_limits_with, scan_local_significance
from diffana.analyses.zprime_invisible.samples import AnalysisSamples, make_samples, recoil_mass_squared_resolution
from diffana.analyses.zprime_invisible.templates import (analysis_templates, hypothesis_theta_edges,
                                                         preselected_reference_cross_sections,
                                                         window_local_histograms)
from diffana.cache import enable_compilation_cache  # noqa: F401  (moved to diffana.cache; kept importable here)


@dataclass
class AnalysisResult:
    """Limits per selection: ``limits[name]`` = dict of numpy arrays ``observed`` (M,),
    ``expected`` (M, 5) (σ_UL in fb, −2σ…+2σ), ``converged`` (M,), ``cut`` (float),
    ``g_vanilla`` / ``g_invisible`` (observed g'), ``g_expected_vanilla`` /
    ``g_expected_invisible`` (median). ``masses`` in GeV; ``timings`` in s."""

    masses: np.ndarray
    limits: dict
    histories: dict = field(default_factory=dict)
    wide_width: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)


def _rows(d: dict, rows) -> dict:
    return {k: np.asarray(v)[rows] for k, v in d.items()}


def run_analysis(config: Config, output: str | os.PathLike, seed: int = 1, console: Console | None = None,
                 make_plots: bool = True) -> AnalysisResult:
    """Run the analysis of ``config`` and write every output into ``output``."""
    from diffana.analyses.zprime_invisible import outputs

    console = console or Console()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    timings, start = {}, time.perf_counter()
    a, t_cfg, tr, sy = config.analysis, config.templates, config.training, config.systematics

    # 1. samples
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task("samples", total=1.0)
        samples: AnalysisSamples = make_samples(
            config, seed, lambda label, f: progress.update(task, completed=f, description=f"samples: {label}"))
        progress.update(task, completed=1.0, description="samples: done")
    timings["samples"] = time.perf_counter() - start
    masses = samples.masses
    centres, widths = masses**2, recoil_mass_squared_resolution(masses, a.resolution)
    from diffana.analyses.zprime_invisible.mc_statistics import (mc_statistics, selected_window_n_eff,
                                                                 write_mc_statistics)

    write_mc_statistics(mc_statistics(samples, masses, widths, t_cfg.window_bins, a.luminosity,
                                      config.samples.train_fraction), output, console)
    edges = hypothesis_theta_edges(centres, t_cfg)  # (M, theta_bins + 1), padded rows
    n_theta_used = (np.diff(edges, axis=1) > 0).sum(axis=1)
    n_window = t_cfg.window_bins
    scan_settings = ScanSettings(sy.luminosity, a.cl, a.scan_chunk_bins, a.scan_structure)
    console.print(f"limit scan: {masses.size} hypotheses × {n_window} M² bins × {t_cfg.theta_bins} θ bins "
                  f"({n_theta_used.min()}–{n_theta_used.max()} used, the rest masked), "
                  f"{a.resolution} σ(M²_rec); {a.scan_structure} structure")
    console.print(f"{masses.size} mass hypotheses {masses[0]:.3f}–{masses[-1]:.3f} GeV; "
                  f"preselected background: {samples.background_train['weight'].size + samples.background_test['weight'].size} "
                  f"MC events, {samples.background_test['weight'].sum():.4g} expected; pseudo-data {samples.pseudo_data['weight'].size} events")

    def templates(signal, background, s_sel, b_sel, sigma_ref, rows=slice(None), window_local=False):
        """Templates of the hypotheses ``rows`` (signal arrays already restricted to them);
        ``window_local`` for every hypothesis of the scan (``templates.window_local_histograms``)."""
        return analysis_templates(centres[rows], widths[rows], signal, jnp.asarray(s_sel, float), background,
                                  jnp.asarray(b_sel, float), edges[rows], n_window, sy, sigma_ref[rows],
                                  window_local=window_local)

    def window_counts(events, selected):
        """(M, bins) weighted counts of ``events`` (pseudo-data, or background MC) with
        ``selected`` true: one window-local histogram, where the full templates would
        also build the signal, μμ(γ) and MC-error histograms only to throw them away."""
        return window_local_histograms(centres, widths, events["recoil_mass_squared"], events["recoil_theta_cm"],
                                       jnp.asarray(events["weight"] * selected, float), edges, n_window)

    # the POI unit from the preselected windows: only the nominal signal and background
    sigma_ref = preselected_reference_cross_sections(centres, widths, samples.signal_test, samples.background_test,
                                                     edges, n_window)

    # the networks learn from net_samples' training half; the cuts are chosen on cut_sample
    # (the same events unless training.cut_validation_fraction holds a share back)
    net_samples, cut_sample = cuts.split_for_cut_choice(samples, tr.cut_validation_fraction, seed)
    # one cut per mass region (one region unless training.cut_region_masses splits the scan),
    # each chosen on its own hypotheses
    region_edges_m2 = np.asarray(tr.cut_region_masses, float) ** 2
    region_rows = cuts.region_rows(masses, tr.cut_region_masses)
    region_cut_rows = cuts.region_cut_hypotheses(region_rows, tr.cut_masses)

    # the cut sample's signal events of every hypothesis in its window: the cut guard counts them
    signal_in_windows = cuts.signal_in_windows(cut_sample.signal["recoil_mass_squared"],
                                               cut_sample.signal["weight"] > 0, centres, widths, n_window)

    def choose_region_cut(rows, cut_rows, score_fn, score_background):
        """The hard cut of one selection in one mass region (hypotheses ``rows``): every try
        in one scan over the region's cut hypotheses ``cut_rows``, none so tight that a
        hypothesis of the region is left with too few signal MC events. ``score_background``:
        the selection's score of the cut sample's background (scored once for all regions)."""
        signal_cut = _rows(cut_sample.signal, cut_rows)
        valid = signal_cut["weight"] > 0
        score_signal_cut = score_fn(signal_cut)
        guard = cuts.guard_ceiling(cuts.signal_guard_scores(score_fn(_rows(cut_sample.signal, rows)),
                                                            signal_in_windows[rows], tr.cut_min_signal_events),
                                   cuts.spared_hypotheses(rows.size, tr.cut_guard_spared_fraction))
        scan = cuts.scan_cut(score_signal_cut, valid, lambda c: templates(
            signal_cut, cut_sample.background, (score_signal_cut > c) & valid,
            score_background > c, sigma_ref, cut_rows), scan_settings, cuts.cut_scan_settings(tr), guard.score)
        choice = {"cut_kept_signal_fraction": float(np.mean(score_signal_cut[valid] > scan.best)),
                  "cut_at_tightest": scan.at_tightest, "cut_signal_guard": guard.score,
                  "cut_signal_guard_mass_GeV": None if guard.hypothesis is None else float(masses[rows[guard.hypothesis]])}
        if scan.at_tightest:
            guard_binds = cuts.tightest_kept_fraction(score_signal_cut, valid, guard.score,
                                                      tr.cut_tightest_signal_fraction) > tr.cut_tightest_signal_fraction
            choice["warning"] = _tightest_reason(guard_binds, guard.score, tr)
        return scan, choice

    def held_out_limits(score_signal, score_background, score_data, cut: cuts.RegionalCut):
        def passes(score, events):
            return cut.passes(score, events["recoil_mass_squared"])

        background_selected = passes(score_background, samples.background_test)
        t = templates(samples.signal_test, samples.background_test, passes(score_signal, samples.signal_test),
                      background_selected, sigma_ref, window_local=True)
        data = window_counts(samples.pseudo_data, passes(score_data, samples.pseudo_data))
        t0 = time.perf_counter()
        observed, expected, converged = scan_limits_with(scan_settings, t, data)
        t1 = time.perf_counter()
        local_z, z_converged = scan_local_significance(t, data, sy.luminosity, a.scan_chunk_bins, a.scan_structure)
        scan_times = {"limits": t1 - t0, "significance": time.perf_counter() - t1}
        efficiency = np.asarray(t["signal"]).sum(axis=1) / samples.luminosity
        # with no signal left the signal-strength fit is degenerate: no significance there
        has_signal = efficiency > 0
        result = {"observed": observed, "expected": expected, "converged": converged,
                  "local_significance": np.where(has_signal, local_z, 0.0),
                  "significance_converged": np.asarray(z_converged, bool) & has_signal,
                  "signal_efficiency": efficiency,
                  "background": np.asarray(t["background"]).sum(axis=1),
                  "background_mc_n_eff": selected_window_n_eff(
                      samples.background_test["recoil_mass_squared"], samples.background_test["weight"],
                      background_selected, centres, widths, n_window)}
        return scan_times, result

    limits, histories, cut_scans, score_functions, chosen_cuts = {}, {}, {}, {}, {}

    def evaluate_selection(name, score_fn):
        score_functions[name] = score_fn
        t0 = time.perf_counter()
        score_background = score_fn(cut_sample.background)
        scans, choices = zip(*(choose_region_cut(rows, cut_rows, score_fn, score_background)
                               for rows, cut_rows in zip(region_rows, region_cut_rows)))
        cut = chosen_cuts[name] = cuts.RegionalCut(region_edges_m2, np.array([scan.best for scan in scans]))
        cut_scans[name] = [np.stack([scan.thresholds, scan.objective]) for scan in scans]
        timings[f"cut_{name}"] = time.perf_counter() - t0
        scan_times, limits[name] = held_out_limits(score_fn(samples.signal_test), score_fn(samples.background_test),
                                                   score_fn(samples.pseudo_data), cut)
        limits[name].update(_cut_record(cut, choices, tr.cut_region_masses))
        for choice in choices:
            if "warning" in choice:
                console.print(f"[yellow]{sel.SELECTION_LABELS[name]}: {choice['warning']}[/yellow]")
        timings[f"limits_{name}"], timings[f"significance_{name}"] = scan_times["limits"], scan_times["significance"]
        timings[f"evaluate_{name}"] = time.perf_counter() - t0
        with_limit = outputs.has_limit(limits[name])
        console.print(f"{sel.SELECTION_LABELS[name]}: cut {cut.label()}, mean expected σ_UL "
                      f"{np.exp(np.mean(np.log(limits[name]['expected'][with_limit, 2]))):.4g} fb over the "
                      f"{int(with_limit.sum())}/{masses.size} hypotheses with a limit")

    # 2. (a) cut-based
    console.print("[bold]selection (a): cut-based τ suppression[/bold] (compiling the limit scan once)")
    evaluate_selection("cut_based", sel.tau_plane_score)

    # 3. networks: (b) BCE, (c) Punzi from (b), (d) limit from (b)
    train_rows, data = sel.hypothesis_training_data(net_samples, tr, centres, widths, seed, n_window)
    data["sigma_ref"] = jnp.asarray(sigma_ref[train_rows])
    net = sel.make_network(net_samples.background_train, tr.hidden, seed)
    t0 = time.perf_counter()
    console.print("[bold]selection (b): MLP with BCE[/bold]")
    net_bce, histories["mlp_bce"] = sel.fit_network(sel.bce_loss, net, data, tr.bce_steps, tr.learning_rate, seed)
    timings["train_mlp_bce"] = time.perf_counter() - t0
    evaluate_selection("mlp_bce", lambda ev: sel.network_scores(net_bce, ev))

    t0 = time.perf_counter()
    console.print("[bold]selection (c): Punzi-net (BCE pre-training, then Punzi loss)[/bold]")
    def soft_cut_logit(position: str):
        """Where (c)'s and (d)'s soft cuts sit: at logit 0 ("none") or at (b)'s chosen cut ("bce"),
        per event at its M²_rec when the cut differs between mass regions."""
        if position != "bce":
            return 0.0
        bce = chosen_cuts["mlp_bce"]
        return float(logit(bce.values[0])) if bce.values.size == 1 else bce.logit_at

    punzi_cut_logit = soft_cut_logit(tr.punzi_cut)
    net_punzi, histories["punzi_net"] = sel.fit_network(
        lambda n, d: sel.punzi_loss(n, d, samples.luminosity, tr.punzi_window, tr.punzi_temperature, punzi_cut_logit,
                                    window_local=tr.n_masses >= sel.WINDOW_LOCAL_FROM_MASSES),
        net_bce, data, tr.punzi_steps, tr.learning_rate, seed)
    timings["train_punzi_net"] = time.perf_counter() - t0
    evaluate_selection("punzi_net", lambda ev: sel.network_scores(net_punzi, ev))

    t0 = time.perf_counter()
    console.print("[bold]selection (d): end to end on the expected limit[/bold] (compiling the limit gradient)")
    # the soft cut (d) trains: at logit 0 (plain output) or at (b)'s chosen cut, the cut it starts from
    cut_logit = soft_cut_logit(tr.limit_cut)
    loss_d = lambda n, d: sel.limit_loss(n, d, theta_edges=edges[train_rows], n_window=n_window, systematics=sy,  # noqa: E731
                                         luminosity_uncertainty=sy.luminosity, cl=a.cl, cut_logit=cut_logit,
                                         temperature=tr.limit_temperature,
                                         window_local=tr.n_masses >= sel.WINDOW_LOCAL_FROM_MASSES)
    net_e2e, histories["end_to_end"] = sel.fit_network(loss_d, net_bce, data, tr.limit_steps, tr.learning_rate, seed)
    timings["train_end_to_end"] = time.perf_counter() - t0
    evaluate_selection("end_to_end", lambda ev: sel.network_scores(net_e2e, ev))

    # 4. the non-negligible-width benchmark (Γ = 0.1·M), 1D fits in enlarged windows
    wide = {}
    if config.wide_width.enabled:
        t0 = time.perf_counter()
        wide = _wide_width_limits(config, samples, widths, score_functions[config.wide_width.selection],
                                  chosen_cuts[config.wide_width.selection], console)
        timings["wide_width"] = time.perf_counter() - t0

    result = AnalysisResult(masses=masses, limits=limits, histories=histories, wide_width=wide, timings=timings)
    outputs.add_coupling_limits(result)
    result.summary = outputs.summary(result)
    timings["total_before_outputs"] = time.perf_counter() - start
    outputs.write_tables(result, output, config, seed)
    if wide:
        from diffana.analyses.zprime_invisible import wide_width as ww

        ww.write_table(masses, wide, output / "wide_width_limits.csv")
    (output / "cut_scans.json").write_text(json.dumps(
        {k: _per_region([scan.tolist() for scan in v]) for k, v in cut_scans.items()}, indent=1))
    if make_plots:
        from diffana.analyses.zprime_invisible import plots

        plots.make_all(result, samples, limits, output)
        if wide:
            from diffana.analyses.zprime_invisible import wide_width as ww

            ww.plot(masses, wide, limits[config.wide_width.selection], output / "zprime_wide_width.png",
                    sel.SELECTION_LABELS[config.wide_width.selection])
    timings["total"] = time.perf_counter() - start
    (output / "timings.json").write_text(json.dumps(timings, indent=1))
    outputs.print_summary(result, console)
    return result


def _per_region(values: list):
    """One region's value as itself, several regions' as a list (the outputs of the
    shipped one-cut configuration keep their shape)."""
    return values[0] if len(values) == 1 else list(values)


def _cut_record(cut: cuts.RegionalCut, choices, region_masses) -> dict:
    """What a selection's result stores about its hard cut: the cut value(s), and per region
    the share of the cut sample's signal it keeps, whether the tightest try won, the signal
    guard's score and hypothesis (GeV); lists over the regions when there are several, with
    ``cut_region_masses_GeV`` their edges."""
    record = {"cut": _per_region([float(v) for v in cut.values])}
    for key in ("cut_kept_signal_fraction", "cut_at_tightest", "cut_signal_guard", "cut_signal_guard_mass_GeV"):
        record[key] = _per_region([choice[key] for choice in choices])
    if len(choices) > 1:
        record["cut_region_masses_GeV"] = [float(m) for m in region_masses]
    return record


def _tightest_reason(guard_binds: bool, ceiling: float, training) -> str:
    """Why the tightest cut tried won, in words: the signal guard stopped the scan
    (``guard_binds``), or the scan's own tightest try (the optimum may then lie at a
    tighter cut)."""
    if guard_binds:
        return (f"the cut stops at the signal guard (score {ceiling:.4g}): a tighter cut leaves some hypothesis "
                f"fewer than {training.cut_min_signal_events} signal MC events (of those the cut is chosen on) in its window")
    return (f"the tightest cut tried won (keeps {training.cut_tightest_signal_fraction:g} of the training signal); "
            "the best cut may be tighter: lower [training] cut_tightest_signal_fraction")


def _wide_width_limits(config: Config, samples: AnalysisSamples, resolutions, score_fn, cut: cuts.RegionalCut,
                       console: Console) -> dict:
    """Limits on σ and g' of a Z' with Γ = relative_width·M, with the hard cut of the
    configured selection; writes nothing (see ``wide_width.write_table``)."""
    from diffana.analyses.zprime_invisible import wide_width as ww

    c, a = config.wide_width, config.analysis
    console.print(f"[bold]wide Z' (Γ = {c.relative_width:g}·M)[/bold]: 1D fits with "
                  f"{sel.SELECTION_LABELS[c.selection]}, cut {cut.label()}")

    def passes(events):
        return cut.passes(score_fn(events), events["recoil_mass_squared"])

    limits = ww.wide_width_limits(samples.masses, resolutions, samples, passes(samples.signal_test),
                                  passes(samples.background_test), passes(samples.pseudo_data),
                                  config.systematics, a.cl, ww.settings_from_config(c))
    ww.add_coupling_limits(samples.masses, limits)
    console.print(f"wide Z': geometric-mean median expected σ_UL "
                  f"{np.exp(np.mean(np.log(limits['expected'][:, 2]))):.4g} fb "
                  f"(converged {int(limits['converged'].sum())}/{samples.masses.size})")
    return limits
