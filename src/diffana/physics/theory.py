"""Lμ−Lτ Z' theory: widths, e⁺e⁻ → μ⁺μ⁻Z' cross section, signal sampler, (g−2)_μ.

The Z' of a gauged Lμ−Lτ couples with strength g' vectorially to μ and τ and to the
left-handed ν_μ, ν_τ. Masses in GeV, widths in GeV, cross sections in fb.

The production e⁺e⁻ → γ* → μ⁺μ⁻Z' is computed at tree level from its two
diagrams (Z' radiated off the μ⁻ or the μ⁺ line), with full muon mass and numerical
Dirac algebra: the spin-summed |M|² is the trace
L_{μρ} P_{νν'} Tr[(q̸₁+m) Γ^{μν} (q̸₂−m) Γ̄^{ρν'}] evaluated with explicit γ
matrices, P = −g + kk/M² the massive polarisation sum. It is integrated over
three-body phase space by importance-sampled Monte Carlo
(:mod:`diffana.physics.phase_space`). See docs/theory.md for the checks.
"""

import csv
import functools
import math
from importlib import resources

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from diffana._util import is_concrete
from diffana.physics import constants as C
from diffana.physics.kinematics import minkowski_dot
from diffana.physics.phase_space import sample_three_body_dalitz, sample_three_body_recoil

__all__ = [
    "partial_width_leptons",
    "partial_width_muons",
    "partial_width_taus",
    "partial_width_neutrinos",
    "total_width",
    "branching_fraction_invisible",
    "beam_four_momenta_cm",
    "squared_matrix_element",
    "zprime_cross_section_mc",
    "zprime_cross_section",
    "zprime_cross_section_table",
    "sample_signal_cm",
    "muon_g_minus_2_contribution",
    "g_minus_2_band",
    "coupling_upper_limit",
    "DEFAULT_PROPAGATOR_OFFSET",
]

MODELS = ("vanilla", "fully_invisible")


def _check_positive(name, x):
    """Raise a ValueError naming ``name`` if a concrete ``x`` has a value <= 0 or NaN."""
    if is_concrete(x):
        values = np.asarray(x, dtype=float)
        if not np.all(values > 0):
            bad = values[~(values > 0)].ravel()[:3]
            raise ValueError(f"{name} must be positive and finite, got {bad.tolist()}")


def _check_model(model):
    if model not in MODELS:
        raise ValueError(f"unknown Z' model {model!r}; choose one of {MODELS}")


# --- Widths and branching fractions ----------------------------------------------------


def partial_width_leptons(mass, coupling, lepton_mass):
    """Γ(Z' → ℓ⁺ℓ⁻) in GeV for a vector coupling g' (zero below threshold).

    Γ = g'² M/(12π) · (1 + 2m²/M²) · √(1 − 4m²/M²);  ``mass``, ``lepton_mass`` in GeV.
    Broadcasts over ``mass`` and ``coupling``.
    """
    _check_positive("Z' mass", mass)
    mass = jnp.asarray(mass, dtype=jnp.float64)
    ratio = lepton_mass**2 / mass**2
    velocity = jnp.sqrt(jnp.clip(1.0 - 4.0 * ratio, 0.0, None))
    return coupling**2 * mass / (12.0 * math.pi) * (1.0 + 2.0 * ratio) * velocity


def partial_width_muons(mass, coupling):
    """Γ(Z' → μ⁺μ⁻) in GeV; ``mass`` in GeV, ``coupling`` g'."""
    return partial_width_leptons(mass, coupling, C.MUON_MASS)


def partial_width_taus(mass, coupling):
    """Γ(Z' → τ⁺τ⁻) in GeV; ``mass`` in GeV, ``coupling`` g'."""
    return partial_width_leptons(mass, coupling, C.TAU_MASS)


def partial_width_neutrinos(mass, coupling):
    """Γ(Z' → νν̄) in GeV for ONE flavour (ν_μ or ν_τ, left-handed only): g'² M/(24π)."""
    _check_positive("Z' mass", mass)
    mass = jnp.asarray(mass, dtype=jnp.float64)
    return coupling**2 * mass / (24.0 * math.pi)


def total_width(mass, coupling):
    """Total width (GeV) of the vanilla Lμ−Lτ Z': μμ + ττ + ν_μν̄_μ + ν_τν̄_τ."""
    return (
        partial_width_muons(mass, coupling)
        + partial_width_taus(mass, coupling)
        + 2.0 * partial_width_neutrinos(mass, coupling)
    )


def branching_fraction_invisible(mass, model="vanilla"):
    """B(Z' → invisible) against ``mass`` (GeV).

    ``"vanilla"``: 2Γ(νν̄)/Γ_total — 1 below 2m_μ, ≈ 1/2 between 2m_μ and 2m_τ,
    → 1/3 far above 2m_τ (independent of g').
    ``"fully_invisible"``: 1 (Z' → χχ̄ to light dark fermions dominates).
    """
    _check_model(model)
    if model == "fully_invisible":
        _check_positive("Z' mass", mass)
        return jnp.ones_like(jnp.asarray(mass, dtype=jnp.float64))
    return 2.0 * partial_width_neutrinos(mass, 1.0) / total_width(mass, 1.0)


# --- Matrix element -----------------------------------------------------------------

_METRIC = np.diag([1.0, -1.0, -1.0, -1.0])


def _gamma_matrices():
    """Dirac-representation γ^μ (upper index), shape (4, 4, 4), complex128."""
    identity = np.eye(2)
    pauli = [
        np.array([[0, 1], [1, 0]], dtype=complex),
        np.array([[0, -1j], [1j, 0]], dtype=complex),
        np.array([[1, 0], [0, -1]], dtype=complex),
    ]
    zero = np.zeros((2, 2))
    gammas = [np.block([[identity, zero], [zero, -identity]]).astype(complex)]
    gammas += [np.block([[zero, s], [-s, zero]]) for s in pauli]
    return np.stack(gammas)


_GAMMA = _gamma_matrices()
_PAULI = np.stack([
    np.array([[0, 1], [1, 0]], dtype=complex),
    np.array([[0, -1j], [1j, 0]], dtype=complex),
    np.array([[1, 0], [0, -1]], dtype=complex),
])


def _slash(p):
    """p̸ = γ^μ p_μ for p (..., 4) with upper index; returns (..., 4, 4) complex."""
    p_lower = p * jnp.asarray(np.diag(_METRIC))
    return jnp.einsum("...m,mab->...ab", p_lower.astype(jnp.complex128), jnp.asarray(_GAMMA))


def _lepton_tensor(p_electron, p_positron, electron_mass):
    """L_{μρ} = Tr[(p̸₂ − m_e) γ_μ (p̸₁ + m_e) γ_ρ] (GeV²), lower indices, real."""
    p1 = p_electron
    p2 = p_positron
    metric = jnp.asarray(_METRIC)
    p1_lower, p2_lower = metric @ p1, metric @ p2
    return 4.0 * (
        jnp.outer(p2_lower, p1_lower)
        + jnp.outer(p1_lower, p2_lower)
        - metric * (minkowski_dot(p1, p2) + electron_mass**2)
    )


def _polarisation_sum(k, mass, include_longitudinal):
    """Z' polarisation sum P_{νν'} = −g_{νν'} + k_ν k_ν'/M² (lower indices)."""
    metric = jnp.asarray(_METRIC)
    polarisation = -metric
    if include_longitudinal:
        k_lower = metric @ k
        polarisation = polarisation + jnp.outer(k_lower, k_lower) / mass**2
    return polarisation


def _coupling_factor(p_electron, p_positron, coupling):
    """e⁴ g'²/(q²)² · 1/4 (initial spin average), GeV⁻⁴."""
    virtuality = minkowski_dot(p_electron + p_positron, p_electron + p_positron)
    couplings = (4.0 * math.pi * C.FINE_STRUCTURE_CONSTANT) ** 2 * coupling**2
    return 0.25 * couplings / virtuality**2


def _muon_propagators(q1, q2, k, muon_mass):
    """S(q₁+k) and S(−q₂−k), S(p) = (p̸ + m)/(p² − m²), (4, 4) complex, GeV⁻¹."""
    identity = jnp.eye(4, dtype=jnp.complex128)
    prop_minus = (_slash(q1 + k) + muon_mass * identity) / (
        minkowski_dot(q1 + k, q1 + k) - muon_mass**2
    )
    prop_plus = (-_slash(q2 + k) + muon_mass * identity) / (
        minkowski_dot(q2 + k, q2 + k) - muon_mass**2
    )
    return prop_minus, prop_plus


def _squared_matrix_element_trace(
    p_electron, p_positron, p_mu_minus, p_mu_plus, p_zprime, mass, coupling,
    include_longitudinal, muon_mass, electron_mass,
):
    """Spin-averaged |M|² (GeV⁻²) for one point, from the Dirac trace (reference).

    Σ|M|² ∝ L_{μρ} P_{νν'} Tr[(q̸₁+m) Γ^{μν} (q̸₂−m) Γ̄^{ρν'}], with
    Γ^{μν} = γ^ν S(q₁+k) γ^μ + γ^μ S(−q₂−k) γ^ν (μ: γ* vertex, ν: Z' vertex).
    """
    gamma = jnp.asarray(_GAMMA)
    identity = jnp.eye(4, dtype=jnp.complex128)
    q1, q2, k = p_mu_minus, p_mu_plus, p_zprime
    lepton = _lepton_tensor(p_electron, p_positron, electron_mass)
    prop_minus, prop_plus = _muon_propagators(q1, q2, k, muon_mass)
    vertex = jnp.einsum("nab,bc,mcd->mnad", gamma, prop_minus, gamma) + jnp.einsum(
        "mab,bc,ncd->mnad", gamma, prop_plus, gamma
    )
    polarisation = _polarisation_sum(k, mass, include_longitudinal)
    # The conjugate vertex Γ̄^{ρν'} equals Γ^{ν'ρ} (index order swapped).
    contracted = jnp.einsum("mr,np,prab->mnab", lepton, polarisation, vertex)
    outer_minus = _slash(q1) + muon_mass * identity
    outer_plus = _slash(q2) - muon_mass * identity
    sandwiched = jnp.einsum("ab,mnbc,cd->mnad", outer_minus, vertex, outer_plus)
    spin_sum = jnp.einsum("mnab,mnba->", sandwiched, contracted)
    return _coupling_factor(p_electron, p_positron, coupling) * jnp.real(spin_sum)


def _dirac_spinors(q_minus, q_plus, muon_mass):
    """ū(q₋, s) as (2, 4) and v(q₊, s) as (4, 2), Dirac representation.

    u = (√(E+m) χ, σ·p χ/√(E+m)), v = (σ·p η/√(E+m), √(E+m) η): Σ u ū = p̸ + m and
    Σ v v̄ = p̸ − m, which is all a spin sum needs (the basis χ, η is arbitrary).
    """
    pauli = jnp.asarray(_PAULI)
    basis = jnp.eye(2, dtype=jnp.complex128)

    def parts(q):
        root = jnp.sqrt(q[0] + muon_mass)
        sigma_p = jnp.einsum("i,iab->ab", q[1:].astype(jnp.complex128), pauli)
        return root, sigma_p @ basis / root

    root_minus, lower_minus = parts(q_minus)
    u = jnp.concatenate([root_minus * basis, lower_minus], axis=0)  # (4, 2)
    u_bar = u.conj().T @ jnp.asarray(_GAMMA[0])
    root_plus, upper_plus = parts(q_plus)
    v = jnp.concatenate([upper_plus, root_plus * basis], axis=0)
    return u_bar, v


def _squared_matrix_element_spinor(
    p_electron, p_positron, p_mu_minus, p_mu_plus, p_zprime, mass, coupling,
    include_longitudinal, muon_mass, electron_mass,
):
    """Spin-averaged |M|² (GeV⁻²) for one point from explicit muon spinors (fast).

    Builds the 2×2 (muon spins) amplitudes B^{νμ} = ū Γ^{μν} v for all 16 Lorentz
    index pairs, then contracts with L_{μρ} and P_{νν'} — ≈ 10× fewer operations
    than the trace and the same result (tested).
    """
    gamma = jnp.asarray(_GAMMA)
    q1, q2, k = p_mu_minus, p_mu_plus, p_zprime
    u_bar, v = _dirac_spinors(q1, q2, muon_mass)
    prop_minus, prop_plus = _muon_propagators(q1, q2, k, muon_mass)
    u_bar_gamma = jnp.einsum("sa,nab->snb", u_bar, gamma)  # ū γ^ν   (s, ν, ·)
    gamma_v = jnp.einsum("mab,bt->mat", gamma, v)  # γ^μ v   (μ, ·, t)
    # Z' off μ⁻: ū γ^ν S₋ γ^μ v ; Z' off μ⁺: ū γ^μ S₊ γ^ν v.
    amplitude = jnp.einsum("snb,bc,mct->snmt", u_bar_gamma, prop_minus, gamma_v)
    amplitude = amplitude + jnp.einsum("smb,bc,nct->snmt", u_bar_gamma, prop_plus, gamma_v)
    lepton = _lepton_tensor(p_electron, p_positron, electron_mass)
    polarisation = _polarisation_sum(k, mass, include_longitudinal)
    spin_sum = jnp.einsum("snmt,mr,np,sprt->", amplitude, lepton.astype(jnp.complex128),
                          polarisation.astype(jnp.complex128), amplitude.conj())
    return _coupling_factor(p_electron, p_positron, coupling) * jnp.real(spin_sum)


_MATRIX_ELEMENT_METHODS = {
    "spinor": _squared_matrix_element_spinor,
    "trace": _squared_matrix_element_trace,
}


def squared_matrix_element(
    p_electron,
    p_positron,
    p_mu_minus,
    p_mu_plus,
    p_zprime,
    mass,
    coupling=1.0,
    *,
    include_longitudinal=True,
    muon_mass=C.MUON_MASS,
    electron_mass=C.ELECTRON_MASS,
    method="spinor",
):
    """Spin-averaged, polarisation-summed |M|² of e⁻e⁺ → μ⁻μ⁺Z' (GeV⁻²).

    Four-momenta (E, px, py, pz) in GeV, shape ``(4,)`` or ``(n, 4)`` (broadcast over
    leading axes); any Lorentz frame. ``mass``: Z' mass (GeV); ``coupling``: g'.
    Both diagrams (Z' off μ⁻ and off μ⁺) with their interference; unpolarised beams
    (1/4 spin average); γ* coupling e with α_em(0); full muon and electron masses.

    ``include_longitudinal=False`` drops the k^νk^ν'/M² term of the Z' polarisation
    sum; by current conservation (Ward identity) it contributes nothing, so the result
    must not change (tested) — and with it ``mass=0`` gives the photon FSR |M|² of
    e⁺e⁻ → μ⁺μ⁻γ with e_FSR → g'. ``method``: ``"spinor"`` (explicit muon spinors,
    fast) or ``"trace"`` (Dirac trace, reference); they agree to round-off.
    """
    if method not in _MATRIX_ELEMENT_METHODS:
        raise ValueError(f"unknown matrix-element method {method!r}; use 'spinor' or 'trace'")
    names = ("p_electron", "p_positron", "p_mu_minus", "p_mu_plus", "p_zprime")
    arrays = [jnp.asarray(p, dtype=jnp.float64) for p in
              (p_electron, p_positron, p_mu_minus, p_mu_plus, p_zprime)]
    for name, p in zip(names, arrays):
        if p.ndim == 0 or p.shape[-1] != 4:
            raise ValueError(f"{name} must have a last axis of length 4 (E, px, py, pz), "
                             f"got shape {p.shape}")
    batch_shape = jnp.broadcast_shapes(*(p.shape[:-1] for p in arrays))
    flat = [jnp.broadcast_to(p, batch_shape + (4,)).reshape(-1, 4) for p in arrays]
    result = _batched_matrix_element(
        *flat, mass, coupling, muon_mass, electron_mass,
        method=method, include_longitudinal=include_longitudinal,
    )
    return result.reshape(batch_shape)


@functools.partial(jax.jit, static_argnames=("method", "include_longitudinal"))
def _batched_matrix_element(p1, p2, q1, q2, k, mass, coupling, muon_mass, electron_mass, *,
                            method, include_longitudinal):
    # Compiled once per (shape, method): eager vmap would re-trace the Dirac algebra.
    single = _MATRIX_ELEMENT_METHODS[method]
    return jax.vmap(
        lambda a, b, c, d, e: single(a, b, c, d, e, mass, coupling, include_longitudinal,
                                     muon_mass, electron_mass)
    )(p1, p2, q1, q2, k)


def beam_four_momenta_cm(sqrt_s=C.SQRT_S):
    """CM-frame (E, px, py, pz) in GeV of the e⁻ (along +z) and e⁺ (along −z) beams."""
    energy = 0.5 * sqrt_s
    momentum = jnp.sqrt(energy**2 - C.ELECTRON_MASS**2)
    electron = jnp.stack([energy, 0.0 * energy, 0.0 * energy, momentum])
    positron = jnp.stack([energy, 0.0 * energy, 0.0 * energy, -momentum])
    return electron, positron


# --- Cross section --------------------------------------------------------------------

DEFAULT_PROPAGATOR_OFFSET = C.MUON_MASS**2
"""Offset a (GeV²) of the 1/(y + a) importance densities of the phase-space sampler;
m_μ² matches the width of the quasi-collinear peak of the muon propagators."""

_CHUNK = 4096


def _event_weights(key, n, mass, coupling, sqrt_s, sampler, offset):
    """Phase-space points ``(n, 3, 4)`` and weights dσ (GeV⁻²): mean(w) → σ."""
    masses = (C.MUON_MASS, C.MUON_MASS, mass)
    if sampler == "dalitz":
        momenta, phase_space = sample_three_body_dalitz(key, n, sqrt_s, masses, offset)
    elif sampler == "recoil":
        momenta, phase_space = sample_three_body_recoil(key, n, sqrt_s, masses)
    else:
        raise ValueError(f"unknown phase-space sampler {sampler!r}; use 'dalitz' or 'recoil'")
    electron, positron = beam_four_momenta_cm(sqrt_s)

    def matrix_element(p):
        return _squared_matrix_element_spinor(
            electron, positron, p[0], p[1], p[2], mass, coupling,
            False, C.MUON_MASS, C.ELECTRON_MASS,
        )

    # lax.map vectorises chunks of events: bounds the memory of the (chunk, 4, 4, 4, 4)
    # Dirac tensors. The kk/M² term is dropped (Ward identity, tested): it only adds
    # round-off amplified by k²/M² at small M.
    squared = jax.lax.map(matrix_element, momenta, batch_size=min(_CHUNK, n))
    flux = 1.0 / (2.0 * sqrt_s**2)  # massless-beam flux factor 1/(2s)
    return momenta, flux * squared * phase_space


def zprime_cross_section_mc(
    key,
    mass,
    n_events=1 << 17,
    *,
    coupling=1.0,
    sqrt_s=C.SQRT_S,
    sampler="dalitz",
    propagator_offset=DEFAULT_PROPAGATOR_OFFSET,
):
    """Monte Carlo σ(e⁺e⁻ → μ⁺μ⁻Z') in fb with its statistical uncertainty.

    ``mass`` (GeV) scalar; ``n_events`` static; ``sampler``: ``"dalitz"`` (importance
    sampled, default) or ``"recoil"`` (flat sequential decays, a cross-check);
    ``propagator_offset`` (GeV², or None for a flat Dalitz plane) tunes the
    importance sampling. Tree level, no ISR, α_em(0). Returns (σ, δσ) in fb.
    """
    _check_positive("Z' mass", mass)
    if is_concrete(mass) and float(mass) >= sqrt_s - 2.0 * C.MUON_MASS:
        raise ValueError(f"Z' mass {float(mass)} GeV is above the kinematic limit "
                         f"√s − 2m_μ = {sqrt_s - 2 * C.MUON_MASS:.4f} GeV")
    _, weights = _event_weights(key, n_events, mass, coupling, sqrt_s, sampler,
                                propagator_offset)
    mean = jnp.mean(weights)
    error = jnp.std(weights) / math.sqrt(n_events)
    return mean * C.GEV_MINUS2_TO_FB, error * C.GEV_MINUS2_TO_FB


# --- Tabulated cross section -----------------------------------------------------------

_TABLE = None


def zprime_cross_section_table():
    """The shipped table as a dict of numpy arrays: ``mass`` (GeV), ``sigma_fb`` and
    ``sigma_error_fb`` (fb, for g' = 1, √s = 10.58 GeV, tree level, no ISR).

    Regenerate with ``python scripts/make_zprime_cross_section_table.py``.
    """
    global _TABLE
    if _TABLE is None:
        text = resources.files("diffana.physics").joinpath(
            "data/zprime_cross_section.csv").read_text()
        rows = [r for r in csv.reader(line for line in text.splitlines()
                                      if line and not line.startswith("#"))]
        header, body = rows[0], np.array(rows[1:], dtype=float)
        _TABLE = {name: body[:, i] for i, name in enumerate(header)}
    return {name: values.copy() for name, values in _TABLE.items()}


def zprime_cross_section(mass):
    """σ(e⁺e⁻ → μ⁺μ⁻Z') in fb for g' = 1 at √s = 10.58 GeV, interpolated in the table.

    Linear interpolation of log[σ/(1 − M/M_max)⁴] in log M (M_max = √s − 2m_μ): plain
    log-log interpolation with the endpoint behaviour divided out; accurate to ≈ 0.1 %
    up to 8 GeV and 2 % at 9.9 GeV. ``mass`` in GeV, any shape, within the table
    (0.01–10 GeV); σ ∝ g'² for other couplings. Differentiable in ``mass``; jit-safe (out-of-range masses raise
    an error also under jit, via ``equinox.error_if``).
    """
    table = zprime_cross_section_table()
    low, high = float(table["mass"][0]), float(table["mass"][-1])
    mass = jnp.asarray(mass, dtype=jnp.float64)
    if is_concrete(mass):
        values = np.asarray(mass)
        if not np.all((values >= low) & (values <= high)):
            bad = values[~((values >= low) & (values <= high))].ravel()[:3]
            raise ValueError(f"Z' mass {bad.tolist()} GeV outside the cross-section "
                             f"table range [{low}, {high}] GeV")
    else:
        mass = eqx.error_if(mass, (mass < low) | (mass > high),
                            "Z' mass outside the cross-section table range")
    nodes = jnp.asarray(table["mass"])
    reduced = jnp.log(jnp.asarray(table["sigma_fb"])) - _endpoint_log_factor(nodes)
    log_sigma = jnp.interp(jnp.log(mass), jnp.log(nodes), reduced)
    return jnp.exp(log_sigma + _endpoint_log_factor(mass))


_ENDPOINT_POWER = 4.0
"""σ vanishes like (M_max − M)⁴ at the kinematic endpoint M_max = √s − 2m_μ (measured
from the table: local exponent 3.98 between 9.77 and 10 GeV)."""


def _endpoint_log_factor(mass):
    """log (1 − M/M_max)^4: divided out before interpolating so that log-log
    interpolation stays accurate up to the endpoint (10 % → 1.6 % error at 9.9 GeV,
    0.7 % → 0.1 % at 8 GeV)."""
    endpoint = C.SQRT_S - 2.0 * C.MUON_MASS
    return _ENDPOINT_POWER * jnp.log1p(-mass / endpoint)


def coupling_upper_limit(sigma_upper_limit_fb, mass, branching_invisible=1.0):
    """Upper limit on g' from an upper limit on σ(e⁺e⁻ → μ⁺μ⁻Z', Z' → invisible).

    g'_UL = √(σ_UL / σ(g'=1)) / √B, with σ_UL in fb, ``mass`` in GeV, B = B(Z' →
    invisible) (use :func:`branching_fraction_invisible` for the vanilla model).
    Assumes a narrow Z' (σ·B ∝ g'² at fixed B). Broadcasts; differentiable.
    """
    _check_positive("sigma_upper_limit_fb", sigma_upper_limit_fb)
    _check_positive("branching_invisible", branching_invisible)
    return jnp.sqrt(sigma_upper_limit_fb / zprime_cross_section(mass)) / jnp.sqrt(
        branching_invisible)


# --- Signal sampler -------------------------------------------------------------------


def sample_signal_cm(
    key,
    n,
    mass,
    sqrt_s=C.SQRT_S,
    *,
    unweighted=True,
    max_weight=None,
    pilot_events=1 << 15,
    oversampling=4,
):
    """Draw e⁺e⁻ → μ⁺μ⁻Z' events in the CM frame, distributed as the tree-level |M|².

    ``key``: PRNG key; ``n`` (static): number of events; ``mass``: Z' mass (GeV);
    ``sqrt_s``: CM energy (GeV). The e⁻ beam is along +z. Returns a dict of
    ``(n, 4)`` (E, px, py, pz) arrays in GeV: ``"mu_plus"``, ``"mu_minus"``,
    ``"zprime"``, plus ``"weight"`` (fb, for g' = 1; normalised so that
    mean(weight) estimates σ — scale by L/n for expected yields at luminosity L).

    ``unweighted=True``: accept–reject against ``max_weight`` (fb); by default a
    pilot run of ``pilot_events`` sets it to 1.5 × its largest weight (the weights
    of the importance sampler are bounded; docs/theory.md gives the fraction of
    events above the envelope). Rounds of ``oversampling·n`` candidates run until
    ``n`` are accepted; every event then carries the same weight, the pilot's σ
    estimate. ``unweighted=False``: importance-sampled events with their weights.
    Jit-able with ``n``, ``unweighted``, ``pilot_events``, ``oversampling`` static.
    """
    _check_positive("Z' mass", mass)
    if not unweighted:
        momenta, weights = _event_weights(key, n, mass, 1.0, sqrt_s, "dalitz",
                                          DEFAULT_PROPAGATOR_OFFSET)
        return _as_dict(momenta, weights * C.GEV_MINUS2_TO_FB)

    key_pilot, key_loop = jax.random.split(key)
    _, pilot = _event_weights(key_pilot, pilot_events, mass, 1.0, sqrt_s, "dalitz",
                              DEFAULT_PROPAGATOR_OFFSET)
    pilot = pilot * C.GEV_MINUS2_TO_FB
    envelope = 1.5 * jnp.max(pilot) if max_weight is None else jnp.asarray(max_weight)
    batch = oversampling * n

    def body(state):
        round_key, buffer, count = state
        round_key, key_events, key_accept = jax.random.split(round_key, 3)
        momenta, weights = _event_weights(key_events, batch, mass, 1.0, sqrt_s, "dalitz",
                                          DEFAULT_PROPAGATOR_OFFSET)
        weights = weights * C.GEV_MINUS2_TO_FB
        accept = jax.random.uniform(key_accept, (batch,)) * envelope < weights
        slot = count + jnp.cumsum(accept) - 1
        # Rejected or surplus events are scattered to index n, which is dropped.
        slot = jnp.where(accept & (slot < n), slot, n)
        buffer = buffer.at[slot].set(momenta, mode="drop")
        return round_key, buffer, jnp.minimum(count + jnp.sum(accept), n)

    initial = (key_loop, jnp.zeros((n, 3, 4)), jnp.asarray(0))
    _, buffer, _ = jax.lax.while_loop(lambda state: state[2] < n, body, initial)
    weight = jnp.full((n,), jnp.mean(pilot))
    return _as_dict(buffer, weight)


def _as_dict(momenta, weights):
    return {
        "mu_minus": momenta[:, 0],
        "mu_plus": momenta[:, 1],
        "zprime": momenta[:, 2],
        "weight": weights,
    }


# --- (g−2)_μ -------------------------------------------------------------------------

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)


def muon_g_minus_2_contribution(mass, coupling):
    """One-loop Z' contribution Δa_μ (dimensionless) for Z' ``mass`` (GeV), coupling g'.

    Δa_μ = g'²/(8π²) ∫₀¹ dz 2m_μ² z²(1−z) / (m_μ² z² + M²(1−z)), by 64-point
    Gauss–Legendre quadrature (the integrand is smooth on [0, 1] for M > 0).
    Limits: the Schwinger term α'/(2π) = g'²/(8π²) for M ≪ m_μ, and
    g'² m_μ²/(12π² M²) for M ≫ m_μ. (The prefactor g'²/(4π²) quoted in the project
    notes would double both limits; the Schwinger limit fixes it to g'²/(8π²).)
    """
    _check_positive("Z' mass", mass)
    mass = jnp.asarray(mass, dtype=jnp.float64)
    z = 0.5 * (jnp.asarray(_GL_NODES) + 1.0)
    w = 0.5 * jnp.asarray(_GL_WEIGHTS)
    m2 = C.MUON_MASS**2
    integrand = 2.0 * m2 * z**2 * (1.0 - z) / (m2 * z**2 + mass[..., None] ** 2 * (1.0 - z))
    return coupling**2 / (8.0 * math.pi**2) * jnp.sum(w * integrand, axis=-1)


def g_minus_2_band(
    mass,
    n_sigma=2.0,
    anomaly=C.MUON_G_MINUS_2_ANOMALY,
    uncertainty=C.MUON_G_MINUS_2_ANOMALY_UNCERTAINTY,
):
    """Range (g_low, g_high) of g' whose Z' explains Δa_μ within ±``n_sigma``.

    Default Δa_μ = (251 ± 59)×10⁻¹¹ (2021; largely removed by the 2025 lattice-based
    SM prediction — see docs/theory.md). ``mass`` in GeV, any shape. g_low is 0 where
    Δa_μ − n_sigma·δ < 0.
    """
    per_unit_coupling = muon_g_minus_2_contribution(mass, 1.0)
    low = jnp.sqrt(jnp.clip(anomaly - n_sigma * uncertainty, 0.0, None) / per_unit_coupling)
    high = jnp.sqrt((anomaly + n_sigma * uncertainty) / per_unit_coupling)
    return low, high
