"""MC statistics of the preselected background: Kish N_eff and effective luminosity.

For weighted events (weights w = expected events at the data luminosity L, fb⁻¹)
Kish's effective number of events is N_eff = (Σw)²/Σw², and the *effective MC
luminosity* is L_eff = L·N_eff/Σw: the luminosity of an unweighted sample with
the same relative MC error √(Σw²)/Σw = 1/√N_eff. L_eff ≥ L means the template's
MC error is no larger than the data's Poisson error.

Windows are the analysis' hypothesis windows: centred on M_k² (GeV²), width
``window_bins`` × σ(M²_rec) at M_k (GeV²). A process is *relevant* in a window
when it is ≥ ``relevance`` (10%) of the background expected there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from diffana.analyses.zprime_invisible.config import BACKGROUND_PROCESSES

PROCESS_CODES = {"mumu": 1, "tautau": 2, "eemumu": 3}
"""``process`` label of each background in the samples (generator.PROCESS_LABELS)."""


@dataclass(frozen=True)
class WeightSums:
    """Σw (expected events), Σw² (events²) and the MC event count of a selection."""

    sum_w: float
    sum_w2: float
    n_mc: int

    @property
    def n_eff(self) -> float:
        """Kish effective number of events (Σw)²/Σw² (0 if empty)."""
        return self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    @property
    def relative_error(self) -> float:
        """Relative MC error √Σw²/Σw of the yield (inf if empty)."""
        return float(np.sqrt(self.sum_w2) / self.sum_w) if self.sum_w > 0 else float("inf")


@dataclass(frozen=True)
class WindowStatistics:
    """One process in one window: yields and MC statistics.

    ``mass`` GeV, ``m2_low``/``m2_high`` GeV² (window edges), ``expected`` Σw
    (events at the data luminosity), ``share`` of the window's background,
    ``n_mc`` MC events, ``n_eff`` Kish N_eff, ``l_eff_ratio`` = L_eff/L,
    ``max_bin_relative_error`` the largest per-bin relative MC error among the
    window's M² bins where the process is ≥ ``relevance`` of the bin's background
    (0 if none), ``relevant`` whether share ≥ relevance.
    """

    process: str
    mass: float
    m2_low: float
    m2_high: float
    expected: float
    share: float
    n_mc: int
    n_eff: float
    l_eff_ratio: float
    max_bin_relative_error: float
    relevant: bool


def weight_sums(weight: np.ndarray) -> WeightSums:
    """:class:`WeightSums` of the weights ``weight`` (events)."""
    weight = np.asarray(weight, dtype=np.float64)
    return WeightSums(float(weight.sum()), float(np.sum(weight**2)), int(weight.size))


def effective_luminosity_ratio(sums: WeightSums) -> float:
    """L_eff/L = N_eff/Σw (dimensionless; inf for an empty selection: no MC need)."""
    return sums.n_eff / sums.sum_w if sums.sum_w > 0 else float("inf")


def full_background(samples, train_fraction: float) -> dict:
    """The whole preselected background (training + held-out) with weights at the
    data luminosity: the halves were scaled by 1/f and 1/(1 − f) (f =
    ``train_fraction``); undo it so the union sums to the expected yield."""
    train, test = samples.background_train, samples.background_test
    if train["weight"].size + test["weight"].size == 0:
        raise ValueError("no preselected background events: cannot compute MC statistics")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    fraction = train_fraction
    weight = np.concatenate([train["weight"] * fraction, test["weight"] * (1.0 - fraction)])
    return {
        "recoil_mass_squared": np.concatenate([train["recoil_mass_squared"], test["recoil_mass_squared"]]),
        "process": np.concatenate([train["process"], test["process"]]).astype(int),
        "weight": weight,
    }


def window_statistics(background: dict, masses, widths, window_bins: int, relevance: float = 0.10
                      ) -> list[WindowStatistics]:
    """Per process and per hypothesis window (``masses`` GeV, ``widths`` σ(M²_rec) GeV²,
    ``window_bins`` bins of one σ): yields, shares, N_eff, L_eff/L and the largest
    per-bin relative MC error where the process is ≥ ``relevance`` of the bin."""
    masses, widths = np.asarray(masses, float), np.asarray(widths, float)
    if masses.shape != widths.shape or masses.ndim != 1:
        raise ValueError(f"masses {masses.shape} and widths {widths.shape} must be equal-length 1-D arrays")
    if window_bins < 1 or not 0.0 < relevance < 1.0:
        raise ValueError(f"need window_bins >= 1 and 0 < relevance < 1, got {window_bins}, {relevance}")
    m2, process, weight = background["recoil_mass_squared"], background["process"], background["weight"]
    rows = []
    for mass, width in zip(masses, widths):
        edges = mass**2 + width * (np.arange(window_bins + 1) - window_bins / 2)
        in_window = (m2 >= edges[0]) & (m2 < edges[-1])
        bin_index = np.clip(np.searchsorted(edges, m2[in_window], side="right") - 1, 0, window_bins - 1)
        total_bins = np.bincount(bin_index, weights=weight[in_window], minlength=window_bins)
        total = float(total_bins.sum())
        for name in BACKGROUND_PROCESSES:
            mine = process[in_window] == PROCESS_CODES[name]
            sums = weight_sums(weight[in_window][mine])
            w_bins = np.bincount(bin_index[mine], weights=weight[in_window][mine], minlength=window_bins)
            w2_bins = np.bincount(bin_index[mine], weights=weight[in_window][mine] ** 2, minlength=window_bins)
            relevant_bins = (w_bins > 0) & (w_bins >= relevance * np.maximum(total_bins, 1e-300))
            bin_errors = np.sqrt(w2_bins[relevant_bins]) / w_bins[relevant_bins]
            share = sums.sum_w / total if total > 0 else 0.0
            rows.append(WindowStatistics(
                process=name, mass=float(mass), m2_low=float(edges[0]), m2_high=float(edges[-1]),
                expected=sums.sum_w, share=share, n_mc=sums.n_mc, n_eff=sums.n_eff,
                l_eff_ratio=effective_luminosity_ratio(sums),
                max_bin_relative_error=float(bin_errors.max()) if bin_errors.size else 0.0,
                relevant=bool(share >= relevance)))
    return rows


def process_totals(background: dict) -> dict[str, dict]:
    """Per process over the whole preselection: expected events, share, MC events,
    N_eff and L_eff/L."""
    total = float(background["weight"].sum())
    out = {}
    for name in BACKGROUND_PROCESSES:
        sums = weight_sums(background["weight"][background["process"] == PROCESS_CODES[name]])
        out[name] = {"expected": sums.sum_w, "share": sums.sum_w / total if total > 0 else 0.0,
                     "n_mc": sums.n_mc, "n_eff": sums.n_eff, "l_eff_ratio": effective_luminosity_ratio(sums)}
    return out


def worst_relevant(rows: list[WindowStatistics]) -> dict[str, dict]:
    """Per process, the smallest L_eff/L and the largest per-bin relative MC error
    over the windows where it is relevant (None if it is relevant nowhere)."""
    out = {}
    for name in BACKGROUND_PROCESSES:
        mine = [r for r in rows if r.process == name and r.relevant]
        if not mine:
            out[name] = None
            continue
        worst = min(mine, key=lambda r: r.l_eff_ratio)
        out[name] = {"min_l_eff_ratio": worst.l_eff_ratio, "at_mass": worst.mass, "n_windows": len(mine),
                     "max_bin_relative_error": max(r.max_bin_relative_error for r in mine)}
    return out


def mc_statistics(samples, masses, widths, window_bins: int, luminosity: float, train_fraction: float,
                  relevance: float = 0.10) -> dict:
    """Everything :func:`write_mc_statistics` stores: ``luminosity`` (fb⁻¹),
    ``totals`` (:func:`process_totals`), ``worst`` (:func:`worst_relevant`),
    ``windows`` (rows of :func:`window_statistics`) and the generation record."""
    background = full_background(samples, train_fraction)
    rows = window_statistics(background, masses, widths, window_bins, relevance)
    return {"luminosity": float(luminosity), "relevance": relevance, "window_bins": int(window_bins),
            "generated": samples.generated, "totals": process_totals(background),
            "worst": worst_relevant(rows), "windows": [asdict(r) for r in rows]}


def format_table(statistics: dict) -> str:
    """Compact text table: per process the share, MC events, N_eff and L_eff/L over
    the whole preselection, and the worst relevant window."""
    lum = statistics["luminosity"]
    lines = [f"MC statistics after preselection (L = {lum:g} fb⁻¹; L_eff = L·N_eff/Σw; "
             f"windows where the process is ≥ {statistics['relevance']:.0%} of the background)",
             f"{'process':8s} {'expected':>10s} {'share':>6s} {'MC ev.':>8s} {'N_eff':>9s} {'L_eff/L':>8s} "
             f"{'worst win L_eff/L':>17s} {'at M (GeV)':>10s} {'max bin err':>11s}"]
    for name, tot in statistics["totals"].items():
        worst = statistics["worst"][name]
        tail = (f"{worst['min_l_eff_ratio']:17.3g} {worst['at_mass']:10.3f} {worst['max_bin_relative_error']:11.1%}"
                if worst else f"{'(never ≥10%)':>17s} {'':10s} {'':11s}")
        lines.append(f"{name:8s} {tot['expected']:10.4g} {tot['share']:6.1%} {tot['n_mc']:8d} {tot['n_eff']:9.4g} "
                     f"{tot['l_eff_ratio']:8.3g} {tail}")
    return "\n".join(lines)


def write_mc_statistics(statistics: dict, output, console=None) -> Path:
    """Write ``statistics`` to ``output``/mc_statistics.json and print :func:`format_table`
    (with ``console.print`` if given, else ``print``). Returns the file path."""
    path = Path(output) / "mc_statistics.json"
    path.write_text(json.dumps(statistics, indent=1, default=float))
    if console is not None:
        console.print(format_table(statistics), soft_wrap=True, markup=False)  # a table: never re-wrapped
    else:
        print(format_table(statistics))
    return path


def selected_window_n_eff(m2, weight, passed, centres_m2, widths, window_bins: int) -> np.ndarray:
    """(M,) Kish N_eff = (Σw)²/Σw² of the background MC events that pass a cut
    (``passed``, (N,) bool) in each hypothesis window (centres and resolutions in
    GeV², ``window_bins`` resolutions wide); 0 where none passes.

    The trust indicator of a window's background template after the selection: a
    window with N_eff ≲ 1 has a background estimate of one heavy MC event or none,
    and its limit is then close to the zero-background one whatever the true
    background. Window sums from cumulative sums over the events sorted by M²
    (:func:`diffana.windows.window_histograms`), O(N log N)."""
    from diffana.windows import window_histograms

    m2 = np.asarray(m2, float)
    order = np.argsort(m2, kind="stable")
    kept = np.where(np.asarray(passed, bool), np.asarray(weight, float), 0.0)[order]
    half = 0.5 * window_bins * np.asarray(widths, float)
    edges = np.stack([np.asarray(centres_m2, float) - half, np.asarray(centres_m2, float) + half], axis=1)
    sum_w = np.asarray(window_histograms(m2[order], kept, edges))[:, 0]
    sum_w2 = np.asarray(window_histograms(m2[order], kept**2, edges))[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sum_w2 > 0, sum_w**2 / sum_w2, 0.0)
