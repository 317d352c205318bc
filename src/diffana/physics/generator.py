"""Fast Belle II event generator: truth → detector → features, weighted to a luminosity.

One jit-compiled pipeline per process (``signal``, ``mumu``, ``tautau``,
``eemumu``): draw beam energies (spread), build the per-event CM frame, generate
the process in the CM (:mod:`diffana.physics.processes`, or the theory helper's
matrix-element sampler for the Z' signal), boost to the lab, simulate the
detector (:mod:`diffana.physics.detector`) and reconstruct the features
(:mod:`diffana.physics.features`). Everything is reproducible from a JAX PRNG key.

>>> from diffana.physics.generator import generate
>>> sample = generate("tautau", luminosity=0.01, seed=1)     # dict of numpy arrays
>>> sample["weight"].sum()                                   # ≈ σ·B²·L events
"""

from __future__ import annotations

from functools import cache
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffana.physics import _beam
from diffana.physics.bias import BackgroundBias, resolve_bias
from diffana.physics import kinematics as kin
from diffana.physics import processes
from diffana.physics.detector import DetectorModel, simulate_detector, standard_normal
from diffana.physics.features import FEATURE_UNITS, NOMINAL_SQRT_S, reconstruct_features

PROCESS_LABELS = {"signal": 0, "mumu": 1, "tautau": 2, "eemumu": 3}
"""Integer ``process`` label of each process name (stored in the ``process`` feature)."""

PROCESS_NAMES = {label: name for name, label in PROCESS_LABELS.items()}
"""Inverse of :data:`PROCESS_LABELS`."""

BACKGROUND_PROCESSES = ("mumu", "tautau", "eemumu")

_TAU_TO_ONE_MUON_LIKE = _beam.BRANCHING_TAU_TO_MU_NU_NU + _beam.BRANCHING_TAU_TO_PI_NU


def cross_section(process: str, mass: float | None = None) -> float:
    """Cross section in fb of what :func:`generate` produces for ``process``.

    ``mumu``: σ(e⁺e⁻→μ⁺μ⁻(γ)) = 1.148 nb; ``tautau``: σ(τ⁺τ⁻(γ)) = 0.919 nb times
    (B(τ→μνν̄) + B(τ→πν))² (both τ give one μ-like track); ``eemumu``: 18.9 nb
    (generator-level cut M_μμ > 0.5 GeV); ``signal``: σ(e⁺e⁻→μ⁺μ⁻Z') for g' = 1
    at ``mass`` (GeV) from :func:`diffana.physics.theory.zprime_cross_section`,
    B(Z'→invisible) = 1 (scale by g'²·B yourself).
    """
    _check_process(process)
    if process == "mumu":
        return _beam.CROSS_SECTION_MUMU_NB * 1e6
    if process == "tautau":
        return _beam.CROSS_SECTION_TAUTAU_NB * 1e6 * _TAU_TO_ONE_MUON_LIKE**2
    if process == "eemumu":
        return _beam.CROSS_SECTION_EEMUMU_NB * 1e6
    _check_mass(mass)
    from diffana.physics.theory import zprime_cross_section

    return float(zprime_cross_section(mass))


def _check_process(process):
    if process not in PROCESS_LABELS:
        raise ValueError(f"unknown process {process!r}; choose one of {sorted(PROCESS_LABELS)}")


def _check_mass(mass):
    if mass is None:
        raise ValueError("the signal needs a Z' mass (GeV): pass mass=...")
    limit = NOMINAL_SQRT_S - 2.0 * kin.MUON_MASS
    if not (0.0 < float(mass) < limit):
        raise ValueError(f"Z' mass {mass} GeV outside (0, {limit:.3f}) GeV (√s − 2m_μ)")


def default_signal_sampler():
    """The theory helper's matrix-element sampler ``sample_signal_cm(key, n, mass)``
    (CM four-momenta for ``mu_plus``, ``mu_minus``, ``zprime``); a clear error if
    it is not available."""
    try:
        from diffana.physics.theory import sample_signal_cm
    except ImportError as error:  # pragma: no cover - depends on the theory module
        raise RuntimeError(
            "signal generation needs diffana.physics.theory.sample_signal_cm (theory module)"
        ) from error
    return sample_signal_cm


def _signal_truth(key, n, mass, sampler):
    momenta = sampler(key, n, mass)
    charged = jnp.stack([momenta["mu_plus"], momenta["mu_minus"]], axis=1)
    return {
        "charged": charged,
        "is_pion": jnp.zeros((n, 2), dtype=bool),
        "photons": jnp.zeros((n, 0, 4)),
        "extra_charged": jnp.zeros((n, 0, 4)),
        "relative_weight": jnp.broadcast_to(jnp.asarray(momenta.get("weight", 1.0), dtype=float), (n,)),
    }


def _signal_truth_with_isr(key, sqrt_s, mass, sampler):
    """Signal with one ISR photon per beam (as for μμ(γ)): each event is drawn by the
    theory sampler in its weighted mode at the reduced energy √s' of the system
    recoiling against the photons, so the weights carry σ(s')."""
    n = sqrt_s.shape[0]
    k_isr, k_events = jax.random.split(key)
    max_fraction = 0.5 * (1.0 - (1.02 * (mass + 2.0 * kin.MUON_MASS)) ** 2 / sqrt_s**2)
    isr = processes.initial_state_radiation(k_isr, sqrt_s, max_fraction[:, None])
    beams = jnp.stack([sqrt_s, jnp.zeros(n), jnp.zeros(n), jnp.zeros(n)], axis=-1)
    system = beams - isr.sum(axis=1)
    reduced = jnp.sqrt(kin.invariant_mass_squared(system))
    one = jax.vmap(lambda k, e: sampler(k, 1, mass, sqrt_s=e, unweighted=False))
    momenta = one(jax.random.split(k_events, n), reduced)
    charged = jnp.stack([momenta["mu_plus"][:, 0], momenta["mu_minus"][:, 0]], axis=1)
    charged = kin.boost(charged, (system[:, 1:] / system[:, :1])[:, None, :])
    return {
        "charged": charged,
        "is_pion": jnp.zeros((n, 2), dtype=bool),
        "photons": isr,
        "extra_charged": jnp.zeros((n, 0, 4)),
        "relative_weight": momenta["weight"][:, 0],
    }


_GENERATORS = {
    "mumu": processes.generate_mumu_cm,
    "tautau": processes.generate_tautau_cm,
    "eemumu": processes.generate_eemumu_cm,
}


def _beams(key, n, beam_energy_spread):
    spread = 1.0 if beam_energy_spread else 0.0
    normal = standard_normal(key, (2, n))  # Box–Muller: cheaper on CPU than jax.random.normal
    e_minus = _beam.ELECTRON_BEAM_ENERGY + spread * _beam.ELECTRON_BEAM_ENERGY_SPREAD * normal[0]
    e_plus = _beam.POSITRON_BEAM_ENERGY + spread * _beam.POSITRON_BEAM_ENERGY_SPREAD * normal[1]
    return kin.beam_four_momenta(e_minus, e_plus)


def _cpu_compiler_options():
    """XLA options for the generator's jit: keep elementwise work in XLA's own fused loops.

    XLA:CPU (jaxlib 0.10) hands elementwise subgraphs to YNNPACK by default; for
    this float64, transcendental-heavy pipeline that splits the event loop into
    ~40 library calls that each stream their arrays through memory, and the
    pipeline ran 1.3–2× slower (benchmarks/bench_generator.py). The option only
    affects how the same computation is compiled (results unchanged); it is
    dropped if this jaxlib does not know it. Finding that out compiles a tiny
    program, so this runs at the first :func:`simulate`, not at import.
    """
    options = {"xla_cpu_experimental_ynn_fusion_type": ""}
    try:
        jax.jit(lambda x: x + 1.0, compiler_options=options).lower(1.0).compile()
    except Exception:  # pragma: no cover - older/newer jaxlib without the option
        return {}
    return options


@cache
def _jitted_simulate():
    """:func:`_simulate_features` jitted with :func:`_cpu_compiler_options`, built once, on first use."""
    return jax.jit(
        _simulate_features,
        static_argnames=("process", "n_events", "beam_energy_spread", "signal_sampler", "signal_isr", "bias"),
        compiler_options=_cpu_compiler_options(),
    )


def simulate(
    key,
    process: str,
    n_events: int,
    mass=None,
    detector: DetectorModel = DetectorModel(),
    beam_energy_spread: bool = True,
    signal_sampler: Callable | None = None,
    signal_isr: bool = False,
    bias: BackgroundBias | None = None,
):
    """Generate ``n_events`` events of ``process`` and return their features.

    JAX arrays of shape ``(n_events,)`` named as in :data:`FEATURE_UNITS`, plus
    ``relative_weight`` (importance weight, not yet normalised to a luminosity).
    Compiled once per (process, n_events); ``mass`` (GeV) and the
    :class:`DetectorModel` numbers are traced, so a new Z' mass or detector
    setting does not recompile. The signal is generated at the nominal √s
    (its sampler has a fixed √s), the backgrounds with per-event beam energies
    when ``beam_energy_spread``. ``signal_isr=True`` adds ISR to the signal
    (weighted events; needs the sampler's ``sqrt_s=``/``unweighted=False`` mode).
    ``bias`` (backgrounds): importance-sampled generation, the density ratio
    p/q multiplied into ``relative_weight`` (:mod:`diffana.physics.bias`).
    """
    return _jitted_simulate()(key, process, n_events, mass, detector, beam_energy_spread, signal_sampler,
                              signal_isr, bias)


def _simulate_features(key, process, n_events, mass, detector, beam_energy_spread, signal_sampler, signal_isr, bias):
    """The traced body of :func:`simulate` (same arguments)."""
    k_beam, k_gen, k_det = jax.random.split(key, 3)
    electron, positron = _beams(k_beam, n_events, beam_energy_spread and process != "signal")
    beta, angle = kin.cm_frame(electron, positron)
    sqrt_s = jnp.sqrt(kin.invariant_mass_squared(electron + positron))
    if process == "signal" and signal_isr:
        truth = _signal_truth_with_isr(k_gen, sqrt_s, mass, signal_sampler)
    elif process == "signal":
        truth = _signal_truth(k_gen, n_events, mass, signal_sampler)
    else:
        truth = _GENERATORS[process](k_gen, sqrt_s, bias=bias)
    to_lab = lambda p: kin.cm_to_lab(p, beta[:, None, :], angle[:, None])  # noqa: E731
    truth_lab = dict(truth)
    for name in ("charged", "photons", "extra_charged"):
        truth_lab[name] = to_lab(truth[name])
    reco = simulate_detector(k_det, truth_lab, detector)
    features = reconstruct_features(reco)
    features["relative_weight"] = truth["relative_weight"]
    return features


def expected_events(process: str, luminosity: float, mass: float | None = None) -> float:
    """Expected number of generated events σ·L for ``luminosity`` in fb⁻¹."""
    return cross_section(process, mass) * luminosity


def generate(
    process: str,
    luminosity: float = 1.0,
    *,
    n_events: int | None = None,
    mass: float | None = None,
    seed: int = 0,
    key=None,
    detector: DetectorModel = DetectorModel(),
    unweighted: bool = False,
    beam_energy_spread: bool = True,
    chunk_size: int = 2**15,
    signal_sampler: Callable | None = None,
    signal_cross_section: float | None = None,
    signal_isr: bool = False,
    progress: Callable[[int], None] | None = None,
    bias: BackgroundBias | bool | None = None,
) -> dict[str, np.ndarray]:
    """Generate a sample of ``process`` weighted to ``luminosity`` (fb⁻¹).

    Returns a dict of 1-D numpy arrays: every feature of :data:`FEATURE_UNITS`
    (``weight`` = expected events per event at ``luminosity``, summing to σ·L;
    ``process`` = :data:`PROCESS_LABELS` code). ``n_events`` defaults to
    round(σ·L) (at least 1). ``unweighted=True`` keeps events with probability
    w/max(w) (hit-or-miss) so all weights are equal. Events are produced in
    chunks of ``chunk_size`` (default 2¹⁵: a chunk's arrays stay in cache, ≈15–20%
    faster per event than 2¹⁸ on the 2-core CPU) with keys folded from ``key`` (or ``seed``), so a
    sample is reproducible for a given (seed, chunk_size); ``progress(n_done)``
    is called after each chunk. ``signal_cross_section`` (fb) overrides the
    theory cross section; ``signal_sampler`` the theory phase-space sampler.
    ``signal_isr=True``: signal with ISR photons (weighted by σ(s'); the total
    stays normalised to the Born σ·L, radiative corrections to it not applied).

    ``bias`` (backgrounds only): ``True`` or a :class:`~diffana.physics.bias.BackgroundBias`
    draws the events from importance-sampling densities q that favour the
    Z'→invisible preselection (hard photons escaping into the beam pipe or the
    ECL gaps, τ→μνν̄ over τ→πν, two-photon events with large virtualities) and
    multiplies each event's relative weight by p/q. ``weight`` = σ·L·r/Σr with r
    the relative weights, i.e. (p/q)·σ·L/N up to the self-normalisation Σr/N → 1
    (for eeμμ, r also carries the generator's own EPA weights): the total is σ·L
    exactly and every distribution equals the unbiased generator's within MC
    errors, with many more events where the analysis looks. Not with ``unweighted``.
    """
    _check_process(process)
    bias = resolve_bias(bias)
    if bias is not None and process == "signal":
        raise ValueError("bias applies to the backgrounds (mumu, tautau, eemumu), not to the signal")
    if bias is not None and unweighted:
        raise ValueError("bias=... gives weighted events; it cannot be combined with unweighted=True")
    if luminosity <= 0:
        raise ValueError(f"luminosity must be positive (fb⁻¹), got {luminosity}")
    if process == "signal":
        _check_mass(mass)
        signal_sampler = signal_sampler or default_signal_sampler()
        sigma = cross_section(process, mass) if signal_cross_section is None else float(signal_cross_section)
    else:
        sigma = cross_section(process)
    total = n_events if n_events is not None else max(1, int(round(sigma * luminosity)))
    if total <= 0:
        raise ValueError(f"n_events must be positive, got {total}")
    # the RngBitGenerator-based key is ~2× faster than threefry on CPU
    key = jax.random.key(seed, impl="rbg") if key is None else key
    chunk_size = int(min(chunk_size, total))
    n_chunks = -(-total // chunk_size)

    def dispatch(index):
        # returns at once (JAX dispatches asynchronously): the next chunk is
        # computed while the host copies out the previous one
        return simulate(
            jax.random.fold_in(key, index),
            process,
            chunk_size,
            mass=None if mass is None else jnp.asarray(float(mass)),
            detector=detector,
            beam_energy_spread=beam_energy_spread,
            signal_sampler=signal_sampler if process == "signal" else None,
            signal_isr=bool(signal_isr) and process == "signal",
            bias=bias,
        )

    sample = None
    pending = dispatch(0)
    for index in range(n_chunks):
        features, pending = pending, (dispatch(index + 1) if index + 1 < n_chunks else None)
        start = index * chunk_size
        take = min(chunk_size, total - start)
        if sample is None:
            sample = {name: np.empty(total, dtype=value.dtype) for name, value in features.items()}
        for name, value in features.items():
            sample[name][start:start + take] = np.asarray(value)[:take]
        if progress is not None:
            progress(take)
    relative = sample.pop("relative_weight")
    if not np.all(np.isfinite(relative)) or relative.sum() <= 0:
        raise RuntimeError(f"{process}: generator produced invalid event weights")
    if unweighted:
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel()[-1:].tolist() + [n_chunks])
        keep = rng.uniform(size=relative.size) * relative.max() < relative
        sample = {name: value[keep] for name, value in sample.items()}
        weight = np.full(int(keep.sum()), sigma * luminosity / max(int(keep.sum()), 1))
    else:
        weight = sigma * luminosity * relative / relative.sum()
    sample["weight"] = weight
    sample["process"] = np.full(weight.size, PROCESS_LABELS[process], dtype=np.int32)
    return sample


def feature_names() -> list[str]:
    """Names of all columns :func:`generate` returns (features, ``weight``, ``process``)."""
    return list(FEATURE_UNITS)
