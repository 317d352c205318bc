"""The four selections compared over seeds, per mass range (issue #12, requirement 5).

One ``diffana zprime-invisible --seed N`` run gives one geometric-mean expected limit per
selection. Whether (d) beats (b) and (c) "by more than the spread" needs several seeds,
and whether it does so *where the search is most sensitive* needs the mean taken per
mass range: the scan steps by one M²_rec resolution, so 325 of the full scan's 582
hypotheses lie above 6.78 GeV and a whole-scan mean is dominated by them.

:func:`read_run` reads a run's ``limits.json``; :func:`compare_seeds` tables, per mass
range and selection, each seed's geometric mean over the masses where *every*
selection of that run has a limit (as :func:`outputs.summary` does for the whole scan),
their geometric mean over seeds with the ×/÷ one-standard-deviation spread, and the
paired per-seed ratio of one selection to each other one (same samples, so the
seed-to-seed fluctuations common to both cancel).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffana.analyses.zprime_invisible.names import SELECTION_LABELS, SELECTION_NAMES
from diffana.analyses.zprime_invisible.outputs import limit_found
from diffana.errors import ConfigError


@dataclass(frozen=True)
class MassRange:
    """A Z' mass range [low, high) in GeV, with its name in tables."""

    label: str
    low: float
    high: float

    def contains(self, masses) -> np.ndarray:
        masses = np.asarray(masses, float)
        return (masses >= self.low) & (masses < self.high)


DEFAULT_RANGES = (
    MassRange("whole scan", 0.0, np.inf),
    MassRange("M_Z' < 1 GeV", 0.0, 1.0),
    MassRange("1 ≤ M_Z' < 6 GeV", 1.0, 6.0),
    MassRange("M_Z' ≥ 6 GeV", 6.0, np.inf),
)
"""Whole scan; below 1 GeV (μμ(γ) with one lost photon); 1–6 GeV (ττ-dominated, the
range of the Punzi-net paper's comparison); above 6 GeV (eeμμ, most scan hypotheses)."""


@dataclass(frozen=True)
class RunLimits:
    """The median expected limits of one run.

    ``expected_fb[name]`` is (M,) σ_UL in fb per mass; ``has_limit[name]`` (M,) marks
    the masses where the selection's fits converged and its cut kept signal;
    ``signal_efficiency[name]`` (M,) the fraction of σ·L the selection keeps in each window.
    """

    source: str
    seed: int
    masses: np.ndarray
    expected_fb: dict
    has_limit: dict
    signal_efficiency: dict

    def common(self) -> np.ndarray:
        """(M,) masses where every selection has a limit."""
        return np.all([self.has_limit[name] for name in self.expected_fb], axis=0)


def read_run(path) -> RunLimits:
    """Read ``limits.json`` (a run's output folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "limits.json"
    if not path.is_file():
        raise ConfigError(f"no limits.json at {path}: give the --output folder of a `diffana zprime-invisible` run")
    document = json.loads(path.read_text())
    masses = np.asarray(document["masses_GeV"], float)
    expected, has_limit, efficiency = {}, {}, {}
    for name in SELECTION_NAMES:
        rows = [row for row in document["rows"] if row["selection"] == name]
        if not rows:
            continue
        by_mass = {row["mass_GeV"]: row for row in rows}
        rows = [by_mass[m] for m in masses.tolist()]
        expected[name] = np.array([row["expected_fb"] for row in rows], float)
        efficiency[name] = np.array([row["signal_efficiency"] for row in rows], float)
        has_limit[name] = limit_found([row["converged"] for row in rows], efficiency[name], expected[name])
    if "end_to_end" not in expected:
        raise ConfigError(f"{path} has no end-to-end selection rows")
    return RunLimits(str(path), int(document["seed"]), masses, expected, has_limit, efficiency)


def _geometric(values) -> float:
    return float(np.exp(np.mean(np.log(values)))) if len(values) else float("nan")


def _spread(values) -> float:
    """×/÷ one-standard-deviation factor: exp of the sample standard deviation of the logs."""
    return float(np.exp(np.std(np.log(values), ddof=1))) if len(values) > 1 else float("nan")


@dataclass(frozen=True)
class OverSeeds:
    """Per-seed values and their geometric mean and ×/÷ spread."""

    per_seed: tuple
    mean: float
    spread: float

    @classmethod
    def of(cls, values) -> "OverSeeds":
        values = tuple(float(v) for v in values)
        finite = [v for v in values if np.isfinite(v) and v > 0]
        return cls(values, _geometric(finite), _spread(finite))


@dataclass(frozen=True)
class RangeComparison:
    """One mass range over the seeds.

    ``limits[name]``: geometric-mean expected σ_UL (fb) per seed; ``paired[name]``:
    per-seed ratio of the ``reference`` selection's geometric mean to ``name``'s
    (< 1: the reference is better); ``compared``: masses in the mean, per seed.
    """

    mass_range: MassRange
    reference: str
    compared: tuple
    limits: dict
    paired: dict

    def beats_beyond_spread(self, name: str) -> bool:
        """The reference beats ``name`` in every seed and its paired ratio stays below 1
        even multiplied by the ×/÷ spread of the selections' own over-seed means."""
        ratio = self.paired[name]
        spread = max(self.limits[name].spread, self.limits[self.reference].spread)
        return bool(all(r < 1 for r in ratio.per_seed) and ratio.mean * spread < 1)


def _range_comparison(runs, mass_range: MassRange, reference: str) -> RangeComparison:
    names = [name for name in SELECTION_NAMES if all(name in run.expected_fb for run in runs)]
    per_run_means = []
    compared = []
    for run in runs:
        masks = run.common() & mass_range.contains(run.masses)
        compared.append(int(masks.sum()))
        per_run_means.append({name: _geometric(run.expected_fb[name][masks]) for name in names})
    limits = {name: OverSeeds.of([means[name] for means in per_run_means]) for name in names}
    paired = {name: OverSeeds.of([means[reference] / means[name] for means in per_run_means])
              for name in names if name != reference}
    return RangeComparison(mass_range, reference, tuple(compared), limits, paired)


def compare_seeds(runs, ranges=DEFAULT_RANGES, reference: str = "end_to_end") -> list:
    """One :class:`RangeComparison` per mass range; ranges with no compared mass in some
    run are kept (their means are NaN there) so that the table says so."""
    runs = list(runs)
    if not runs:
        raise ConfigError("compare_seeds needs at least one run")
    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"runs repeat a seed ({seeds}): the spread would be understated")
    return [_range_comparison(runs, mass_range, reference) for mass_range in ranges]


def _json_ready(value):
    """Non-finite floats (an open range end, a range without masses) as ``None``: strict JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def comparison_to_dict(comparison: RangeComparison) -> dict:
    """A :class:`RangeComparison` as strict-JSON data, with each selection's verdict."""
    data = _json_ready(dataclasses.asdict(comparison))
    data["beaten_beyond_spread"] = {name: comparison.beats_beyond_spread(name) for name in comparison.paired}
    return data


def _cell(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}" if np.isfinite(value) else "–"


def markdown_table(comparison: RangeComparison, seeds) -> str:
    """The comparison of one mass range as a Markdown table."""
    ref_label = SELECTION_LABELS[comparison.reference].split(" ")[0]
    header = (["selection"] + [f"seed {s}" for s in seeds] + ["over seeds (×/÷ spread)", f"paired {ref_label}/selection",
                                                                "beaten beyond spread"])
    lines = [f"**{comparison.mass_range.label}** (masses compared per seed: "
             f"{', '.join(str(n) for n in comparison.compared)})", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, limits in comparison.limits.items():
        cells = [SELECTION_LABELS[name]] + [_cell(v) for v in limits.per_seed]
        cells.append(f"{_cell(limits.mean)} (×/÷ {_cell(limits.spread)})")
        if name in comparison.paired:
            ratio = comparison.paired[name]
            cells.append(f"{_cell(ratio.mean)} (×/÷ {_cell(ratio.spread)}); per seed "
                         + ", ".join(_cell(v, 2) for v in ratio.per_seed))
            cells.append("yes" if comparison.beats_beyond_spread(name) else "no")
        else:
            cells += ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
