"""Event samples of the Z'→invisible analysis: generation or ROOT input, preselection,
mass hypotheses, the train/held-out split and the pseudo-data.

Units: masses GeV, M²_rec GeV², angles deg, luminosity fb⁻¹. Background events carry
``weight`` = expected events at the analysis luminosity; signal events carry
``weight`` = (efficiency × luminosity) per event in fb⁻¹, so a signal template times
the POI σ (fb) gives expected events.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from diffana.analyses.zprime_invisible.config import BACKGROUND_PROCESSES, Config, root_file_paths
# the feature names are defined in names.py (config validates against them) and kept
# available here, where samples are made: samples.REQUIRED_FEATURES, …
from diffana.analyses.zprime_invisible.names import (
    ANALYSIS_FEATURES,
    FIT_FEATURES,
    PUNZI_FEATURES,
    REQUIRED_FEATURES,
    RESOLUTION_MODELS,
    TAU_PLANE_FEATURES,
)
from diffana.errors import ConfigError
from diffana.physics import features as _features

RESOLUTION_MASSES = np.array([0.1, 0.5, 1.0, 1.3, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
RESOLUTION_SIGMAS = np.array([0.234, 0.262, 0.287, 0.339, 0.311, 0.271, 0.262, 0.243, 0.196, 0.158, 0.096, 0.050, 0.046])
"""σ(M²_rec) of the signal peak (GeV²) against M_Z' (GeV), PHYSICS.md table."""

PUBLISHED_RESOLUTION_M2 = np.array([0.0, 9.0, 72.25])
PUBLISHED_RESOLUTION_SIGMAS = np.array([0.23, 0.23, 0.0484])
"""σ(M²_rec) (GeV²) against M²_rec (GeV²) of the published scan (PRL 130, 231801),
interpolated linearly in M²_rec, constant beyond the ends:

- 0.23 GeV² up to 9 GeV²: the paper's stated maximum, "0.23 GeV² at 9 GeV²"; the text
  gives no lower value below 9 GeV² (its range is 0.06–0.23), so the maximum holds there.
- 0.0484 GeV² at 72.25 GeV² (M = 8.5 GeV): **the one count-matched constant** — with
  it the one-resolution steps from 0.01 to 8.5 GeV give exactly the published 582
  hypotheses. It is the paper's "steps of 3 MeV" at the top of the scan within that
  number's rounding (ΔM = σ/2M = 2.86 MeV here; taking 3.0 MeV literally, σ = 0.051 GeV²,
  gives 571 hypotheses). It lies below the text's "minimum of 0.06 GeV² at 80 GeV²",
  which the published 3 MeV step contradicts as well (0.06 GeV² at 8.5 GeV would be a
  3.5 MeV step).

The steps then run from 2.86 MeV (at 8.5 GeV) to 470 MeV (the first, from 0.01 GeV,
≈ √0.23 GeV); the second step is 199 MeV, the paper's largest quoted step (202 MeV).
"""

def recoil_mass_squared_resolution(mass, model: str = "published") -> np.ndarray:
    """σ(M²_rec) in GeV² at Z' mass ``mass`` (GeV): linear interpolation of the
    ``model``'s curve (:data:`names.RESOLUTION_MODELS`), constant beyond its ends."""
    mass = np.asarray(mass, float)
    if model == "published":
        return np.interp(mass**2, PUBLISHED_RESOLUTION_M2, PUBLISHED_RESOLUTION_SIGMAS)
    if model == "table":
        return np.interp(mass, RESOLUTION_MASSES, RESOLUTION_SIGMAS)
    raise ValueError(f"unknown resolution model {model!r}; known: {list(RESOLUTION_MODELS)}")


def mass_hypotheses(mass_min: float, mass_max: float, step: float = 1.0, n_masses: int = 0,
                    resolution: str = "published") -> np.ndarray:
    """Z' masses (GeV) from ``mass_min`` to ``mass_max`` spaced by ``step`` resolution
    units in M² (m²_{k+1} = m²_k + step·σ(m_k), σ from the ``resolution`` model);
    ``n_masses`` > 0 picks that many, evenly spread over the scan (always including
    both ends)."""
    masses = [mass_min]
    while True:
        m2 = masses[-1] ** 2 + step * float(recoil_mass_squared_resolution(masses[-1], resolution))
        if m2 > mass_max**2:
            break
        masses.append(float(np.sqrt(m2)))
    masses = np.array(masses)
    if n_masses and n_masses < masses.size:
        masses = masses[np.unique(np.round(np.linspace(0, masses.size - 1, n_masses)).astype(int))]
    return masses


@dataclass
class AnalysisSamples:
    """Preselected events split into training and held-out halves.

    ``background_*``: dict feature → (N,) numpy arrays incl. ``weight`` (events) and
    ``process`` (1 mumu, 2 tautau, 3 eemumu). ``signal_*``: dict feature → (M, n)
    arrays, one row per hypothesis in ``masses`` (GeV); ``weight`` in fb⁻¹ (ε·L per
    event), 0 for padding. Each half's weights are scaled to the full sample.
    ``pseudo_data``: held-out-like background events drawn (Poisson) from the
    background model; each has weight 1. ``background_test`` and ``pseudo_data``
    are ordered by ``recoil_mass_squared`` (:func:`by_recoil_mass`).
    """

    masses: np.ndarray
    background_train: dict
    background_test: dict
    signal_train: dict
    signal_test: dict
    pseudo_data: dict
    luminosity: float
    generated: dict


def at_luminosity(samples: AnalysisSamples, luminosity: float) -> AnalysisSamples:
    """The same MC events with every weight rescaled to ``luminosity`` (fb⁻¹).

    Background weights (expected events) and signal weights (ε·L) are both ∝ L, so
    efficiencies are unchanged while every background count scales; the same MC then
    stands for less data, i.e. the MC-to-data ratio grows as L falls. The pseudo-data
    (Poisson counts drawn at the old luminosity) cannot be rescaled and are dropped
    (``None``): for studies of the selection, not for fits to pseudo-data."""
    if not luminosity > 0:
        raise ConfigError(f"luminosity must be > 0 fb⁻¹, got {luminosity!r}")
    ratio = luminosity / samples.luminosity

    def scaled(sample: dict) -> dict:
        return {**sample, "weight": np.asarray(sample["weight"]) * ratio}

    return dataclasses.replace(samples, luminosity=float(luminosity), pseudo_data=None,
                               background_train=scaled(samples.background_train),
                               background_test=scaled(samples.background_test),
                               signal_train=scaled(samples.signal_train), signal_test=scaled(samples.signal_test))


def _keep(sample: dict, mask: np.ndarray) -> dict:
    return {k: np.asarray(sample[k])[mask] for k in (*ANALYSIS_FEATURES, "weight")}


def _split(sample: dict, fraction: float, rng: np.random.Generator) -> tuple[dict, dict]:
    n = sample["weight"].size
    is_train = rng.uniform(size=n) < fraction
    train = {k: v[is_train] for k, v in sample.items()}
    test = {k: v[~is_train] for k, v in sample.items()}
    train["weight"] = train["weight"] / fraction
    test["weight"] = test["weight"] / (1.0 - fraction)
    return train, test


def _pad_stack(samples: list[dict]) -> dict:
    width = max(1, max(s["weight"].size for s in samples))
    out = {}
    for key in samples[0]:
        block = np.zeros((len(samples), width))
        for i, s in enumerate(samples):
            block[i, : s[key].size] = s[key]
        out[key] = block
    return out


def concatenate_processes(samples: dict[str, dict]) -> dict:
    """One background sample from ``{process: sample}``, with the ``process`` label
    column (``generator.PROCESS_LABELS``)."""
    from diffana.physics.generator import PROCESS_LABELS

    out = {k: np.concatenate([s[k] for s in samples.values()]) for k in next(iter(samples.values()))}
    out["process"] = np.concatenate([np.full(s["weight"].size, PROCESS_LABELS[p]) for p, s in samples.items()])
    return out


def by_recoil_mass(events: dict) -> dict:
    """``events`` (dict of (N,) numpy columns) ordered by ``recoil_mass_squared``
    (ascending, stable): the held-out events' order, so that their window-local
    histograms (``templates.window_local_histograms``) need no sort per call."""
    order = np.argsort(events["recoil_mass_squared"], kind="stable")
    return {k: np.asarray(v)[order] for k, v in events.items()}


def draw_pseudo_data(background: dict, rng: np.random.Generator) -> dict:
    """Pseudo-data events: N ~ Poisson(Σw), events drawn with probability ∝ w
    (with replacement) from the weighted ``background``; each gets weight 1."""
    weight = background["weight"]
    n = rng.poisson(weight.sum())
    index = rng.choice(weight.size, size=n, p=weight / weight.sum())
    data = {k: v[index] for k, v in background.items()}
    data["weight"] = np.ones(n)
    return data


GENERATION_BATCH = 2**20
"""Events generated per call when a process is generated in batches: only each
batch's preselected events are kept, so memory stays flat for 10⁷ events."""


def background_event_count(config: Config, process: str) -> int:
    """Generated events for background ``process``: ``[samples] process_events``
    if it names the process, else ``background_events``."""
    s = config.samples
    return int(s.process_events.get(process, s.background_events))


def background_seed(seed: int, process_index: int) -> int:
    """The generator seed of background process ``process_index`` (its place in
    ``BACKGROUND_PROCESSES``) in the samples of ``seed``: distinct for every (seed,
    process) with fewer than 100 processes. Shared with :mod:`.background_store`, whose
    chunk of seed s is the background of ``make_samples(config, s)``."""
    return seed * 100 + process_index


def generate_preselected(process: str, luminosity: float, n_events: int, seed: int, bias: bool,
                         min_muon_delta_phi: float) -> dict:
    """Generate ``n_events`` of background ``process`` (weighted to ``luminosity``,
    fb⁻¹) in batches of :data:`GENERATION_BATCH` and keep the preselected events.

    Each batch is normalised by the generator to σ·L; its kept weights are scaled
    by its share of the events, so the sum over all generated events is σ·L (the
    event-weighted average of independent estimates). ``bias``: importance-sampled generation
    (:mod:`diffana.physics.bias`).
    """
    from diffana.physics.generator import generate

    n_batches = -(-n_events // GENERATION_BATCH)
    kept = []
    for batch in range(n_batches):
        size = min(GENERATION_BATCH, n_events - batch * GENERATION_BATCH)
        # batch seeds seed·1000 + b: distinct for every (seed, batch) up to 1000 batches
        sample = generate(process, luminosity, n_events=size, seed=seed * 1000 + batch,
                          chunk_size=min(size, 2**16), bias=bias)
        # each batch sums to σ·L: weigh it by its share of the events
        sample["weight"] = sample["weight"] * (size / n_events)
        kept.append(_keep(sample, np.asarray(_features.preselection(sample, min_muon_delta_phi))))
    return {k: np.concatenate([b[k] for b in kept]) for k in kept[0]}


def make_samples(config: Config, seed: int, progress: Callable[[str, float], None] | None = None) -> AnalysisSamples:
    """Generate (or read) and preselect every sample for ``config``; ``seed`` fixes
    generation, the split and the pseudo-data. ``progress(label, fraction_done)``."""
    from diffana.physics.generator import cross_section, generate

    a, s = config.analysis, config.samples
    report = progress or (lambda label, fraction: None)
    masses = mass_hypotheses(a.mass_min, a.mass_max, a.mass_step, a.n_masses, a.resolution)
    rng = np.random.default_rng([seed, 20261122])
    n_jobs = len(BACKGROUND_PROCESSES) + masses.size
    done = 0
    backgrounds, generated, generation_seconds = {}, {}, {}
    for process_index, process in enumerate(BACKGROUND_PROCESSES):
        report(f"background {process}", done / n_jobs)
        if s.source == "root":
            from diffana.io import read_sample

            path = root_file_paths(config, Path(config.source).parent)[process]
            sample = read_sample(path, s.tree, branch_map=s.branch_map or None)
            generated[process] = int(sample["weight"].size)
            backgrounds[process] = _keep(sample, np.asarray(_features.preselection(sample, a.min_muon_delta_phi)))
        else:
            t0 = time.perf_counter()
            n_events = background_event_count(config, process)
            backgrounds[process] = generate_preselected(process, a.luminosity, n_events,
                                                        background_seed(seed, process_index), s.bias,
                                                        a.min_muon_delta_phi)
            generated[process] = n_events
            generation_seconds[process] = time.perf_counter() - t0
        done += 1
    background = concatenate_processes(backgrounds)
    background_train, background_test = _split(background, s.train_fraction, rng)
    signal_train, signal_test = [], []
    for k, mass in enumerate(masses):
        report(f"signal {mass:.3f} GeV", done / n_jobs)
        sample = generate("signal", a.luminosity, n_events=s.signal_events_per_mass, mass=float(mass),
                          seed=seed * 100 + 10 + k, chunk_size=s.signal_events_per_mass, signal_isr=s.signal_isr)
        sample["weight"] = sample["weight"] / cross_section("signal", float(mass))  # fb⁻¹ per event
        kept = _keep(sample, np.asarray(_features.preselection(sample, a.min_muon_delta_phi)))
        train, test = _split(kept, s.train_fraction, rng)
        signal_train.append(train)
        signal_test.append(test)
        done += 1
    generated["signal_per_mass"] = s.signal_events_per_mass
    generated["seconds"] = generation_seconds  # wall time per background process (generation + preselection)
    generated["biased"] = bool(s.bias and s.source == "generator")
    report("pseudo-data", 1.0)
    pseudo = draw_pseudo_data(background_test, rng)
    return AnalysisSamples(
        masses=masses,
        background_train=background_train,
        background_test=by_recoil_mass(background_test),
        signal_train=_pad_stack(signal_train),
        signal_test=_pad_stack(signal_test),
        pseudo_data=by_recoil_mass(pseudo),
        luminosity=a.luminosity,
        generated=generated,
    )
