"""Truth-level event models for e⁺e⁻ → μ⁺μ⁻(γ), τ⁺τ⁻(γ), e⁺e⁻μ⁺μ⁻ in the CM frame.

Each ``generate_*_cm(key, sqrt_s)`` draws one event per entry of ``sqrt_s``
(GeV, shape ``(n,)``: the true collision energy of each event, beam spread
included) and returns a :data:`TruthEvents` dict in the CM frame (e⁻ beam on +z):

``charged``  (n, 2, 4)  the two charged candidates, [positive, negative] (GeV)
``is_pion``  (n, 2)     True where the candidate is a π (τ→πν), not a μ
``photons``  (n, k, 4)  radiated photons (E = 0 marks an empty slot)
``extra_charged`` (n, m, 4)  other charged particles (the scattered e± of eeμμ)
``relative_weight`` (n,)     importance weight (1 for unweighted processes)

The models are deliberately simple, documented approximations (docs/physics.md):
collinear-enhanced soft-photon spectra for ISR/FSR, 1 + cos²θ pair production,
the Michel spectrum for τ→μνν̄, two-body τ→πν, and the equivalent-photon
approximation for two-photon μ⁺μ⁻ production.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from diffana.physics import _beam
from diffana.physics import bias as _bias
from diffana.physics import kinematics as kin

ALPHA = _beam.FINE_STRUCTURE_CONSTANT


def radiator_exponent(s, mass):
    """β = (2α/π)(ln(s/m²) − 1): exponent of the soft-photon spectrum β x^(β−1)
    for radiation off a pair of particles of ``mass`` (GeV) at ``s`` (GeV²)."""
    return 2.0 * ALPHA / jnp.pi * (jnp.log(s / mass**2) - 1.0)


def _collinear_cos(u, velocity):
    """cos θ from the dipole-like density ∝ 1/(1 − v cos θ) on [−1, 1] (inverse CDF).

    Peaks at θ ≈ m/E along the emitter and is flat in log θ above it: the
    collinear enhancement of QED radiation.
    """
    # (1 + v)^(1−u)(1 − v)^u written with one log and one exp
    return (1.0 - (1.0 + velocity) * jnp.exp(u * jnp.log((1.0 - velocity) / (1.0 + velocity)))) / velocity


def _sample_one_plus_cos2(u):
    """cos θ with density ∝ 1 + cos²θ (closed-form root of c³ + 3c + 4 − 8u = 0)."""
    q = 4.0 - 8.0 * u
    root = jnp.sqrt(q * q / 4.0 + 1.0)
    return jnp.cbrt(-q / 2.0 + root) + jnp.cbrt(-q / 2.0 - root)


def _power_of_uniform(u, exponent):
    """u^exponent for uniform draws u ∈ [0, 1) (0 at u = 0), as exp(exponent·ln u)."""
    return jnp.exp(exponent * jnp.log(u))


def _uniform_azimuth(key, shape):
    """(cos φ, sin φ) of an azimuth φ uniform in [0, 2π)."""
    return kin.cos_sin_of_turn(jax.random.uniform(key, shape))


def _photon_along(energy, cos_theta, azimuth, axis):
    """Massless four-momentum of energy ``energy`` at (θ, φ) around ``axis`` (…,3);
    ``azimuth`` = (cos φ, sin φ)."""
    local = kin.from_polar_cos_sin(energy, cos_theta, *azimuth, 0.0)
    return kin.rotate_to_direction(local, axis)


def initial_state_radiation(key, sqrt_s, max_fraction):
    """One ISR photon off each beam (CM frame), shape (n, 2, 4) in GeV.

    Energy fraction x = 2E_γ/√s from β/2·x^(β/2−1) (β: :func:`radiator_exponent`
    with the electron mass), capped at ``max_fraction`` so the remaining system
    stays above threshold; angle from the 1/(1 − v cos θ) collinear density
    around its own beam.
    """
    n = sqrt_s.shape[0]
    k_x, k_c, k_phi = jax.random.split(key, 3)
    s = sqrt_s**2
    beta_half = 0.5 * radiator_exponent(s, kin.ELECTRON_MASS)
    x = _power_of_uniform(jax.random.uniform(k_x, (n, 2)), 1.0 / beta_half[:, None])
    x = jnp.minimum(x, max_fraction)
    energy = 0.5 * x * sqrt_s[:, None]
    velocity = jnp.sqrt(1.0 - (2.0 * kin.ELECTRON_MASS / sqrt_s[:, None]) ** 2)
    cos_theta = _collinear_cos(jax.random.uniform(k_c, (n, 2)), velocity)
    # photon 0 follows the e⁻ (+z), photon 1 the e⁺ (−z)
    cos_theta = cos_theta * jnp.array([1.0, -1.0])
    return kin.from_polar_cos_sin(energy, cos_theta, *_uniform_azimuth(k_phi, (n, 2)), 0.0)


def biased_initial_state_radiation(key, sqrt_s, max_fraction, use_biased, bias: _bias.BackgroundBias):
    """:func:`initial_state_radiation` where, for the photons marked ``use_biased``
    (n, 2), the energy fraction is drawn log-uniform in [0.02, 1] (a share
    ``bias.isr_hard_share`` of the time in [``bias.isr_hard_low``, 1]) and the angle about the
    beam log-uniform above ``bias.isr_angle_range[0]`` (deg), a share ``bias.isr_collinear_share``
    of the time collinear as unbiased (:func:`_bias.collinear_cos`).

    Returns ``(photons (n, 2, 4) GeV, log_ratio (n, 2))``: ln g/p of each photon's
    draw, for every photon, as the mixture weight needs.
    """
    n = sqrt_s.shape[0]
    k_x, k_c, k_phi = jax.random.split(key, 3)
    beta_half = 0.5 * radiator_exponent(sqrt_s**2, kin.ELECTRON_MASS)
    x, log_rx = _bias.power_fraction(k_x, beta_half[:, None], use_biased, hard_share=bias.isr_hard_share,
                                     hard_low=bias.isr_hard_low)
    # the cap acts on the drawn x: p and g map alike, so g/p of the raw x stays exact
    x = jnp.minimum(x, max_fraction)
    energy = 0.5 * x * sqrt_s[:, None]
    velocity = jnp.sqrt(1.0 - (2.0 * kin.ELECTRON_MASS / sqrt_s[:, None]) ** 2)
    cos_theta, log_rc = _bias.collinear_cos(k_c, velocity, use_biased, bias.isr_angle_range, bias.isr_collinear_share)
    cos_theta = cos_theta * jnp.array([1.0, -1.0])
    photons = kin.from_polar_cos_sin(energy, cos_theta, *_uniform_azimuth(k_phi, (n, 2)), 0.0)
    return photons, log_rx + log_rc


def _pair_in_recoil_frame(key, system, mass):
    """Produce a fermion pair of ``mass`` (GeV) from ``system`` (n,4) with a
    1 + cos²θ distribution about the beam axis; returns (n, 2, 4) [f⁺, f⁻]."""
    n = system.shape[0]
    k_c, k_phi = jax.random.split(key)
    m_system = jnp.sqrt(jnp.clip(kin.invariant_mass_squared(system), (2.0 * mass) ** 2, None))
    p_star = kin.two_body_momentum(m_system, mass, mass)
    cos_theta = _sample_one_plus_cos2(jax.random.uniform(k_c, (n,)))
    minus = kin.from_polar_cos_sin(p_star, cos_theta, *_uniform_azimuth(k_phi, (n,)), mass)
    plus = minus * jnp.array([1.0, -1.0, -1.0, -1.0])
    beta = system[:, 1:] / system[:, :1]
    pair = jnp.stack([plus, minus], axis=1)
    return kin.boost(pair, beta[:, None, :])


def _final_state_radiation(key, leptons, s, mass, use_biased=None, bias=None):
    """Let each lepton (n,2,4) [positive, negative] radiate one collinear photon; returns
    (leptons after radiation, photons (n,2,4), log_ratio (n,2)).

    Energy fraction y of the lepton energy from β/2·y^(β/2−1) with β for the
    lepton mass; angle from 1/(1 − v cos θ) around the lepton. The lepton keeps
    p⃗ − k⃗ and is put back on shell (exact up to O(θ²) of the collinear photon).
    Where ``use_biased`` (n,2), y and the direction are drawn by :func:`_bias.fsr_photon`
    (mostly hard and aimed at the track's ECL cluster, ``bias``); log_ratio = ln g/p of
    each photon's draw (0 without ``use_biased``).
    """
    n = leptons.shape[0]
    k_y, k_c, k_phi = jax.random.split(key, 3)
    beta_half = 0.5 * radiator_exponent(s, mass)
    energy = leptons[..., 0]
    momentum = kin.momentum_magnitude(leptons)
    velocity = momentum / energy
    if use_biased is None:
        y = _power_of_uniform(jax.random.uniform(k_y, (n, 2)), 1.0 / beta_half[:, None])
        cos_theta = _collinear_cos(jax.random.uniform(k_c, (n, 2)), velocity)
        azimuth = _uniform_azimuth(k_phi, (n, 2))
        log_ratio = jnp.zeros((n, 2))
    else:
        y, direction, log_ratio = _bias.fsr_photon(k_y, beta_half[:, None], velocity, leptons[..., 1:],
                                                   jnp.array([1.0, -1.0]), use_biased, bias)
        cos_theta, azimuth = 1.0 - direction.one_minus_cos, (direction.cos_psi, direction.sin_psi)
    y = jnp.minimum(y, 0.9)
    photons = _photon_along(y * energy, cos_theta, azimuth, leptons[..., 1:])
    after = kin.on_shell(leptons[..., 1:] - photons[..., 1:], mass)
    return after, photons, log_ratio


def generate_mumu_cm(key, sqrt_s, bias: _bias.BackgroundBias | None = None):
    """e⁺e⁻ → μ⁺μ⁻(γ): up to two ISR and two FSR photons (see module docs).

    ``bias``: a defensive mixture with one component per set of one or two photons
    (those photons hard, at the angles that escape detection;
    :mod:`diffana.physics.bias`); ``relative_weight`` = p/q.
    """
    n = sqrt_s.shape[0]
    k_isr, k_pair, k_fsr = jax.random.split(key, 3)
    s = sqrt_s**2
    max_fraction = 0.5 * (1.0 - (2.2 * kin.MUON_MASS) ** 2 / s)
    beams = jnp.stack([sqrt_s, jnp.zeros(n), jnp.zeros(n), jnp.zeros(n)], axis=-1)
    if bias is None or bias.mumu_fraction == 0.0:
        isr = initial_state_radiation(k_isr, sqrt_s, max_fraction[:, None])
        system = beams - isr.sum(axis=1)
        muons = _pair_in_recoil_frame(k_pair, system, kin.MUON_MASS)
        muons, fsr, _ = _final_state_radiation(k_fsr, muons, kin.invariant_mass_squared(system), kin.MUON_MASS)
        weight = jnp.ones(n)
    else:
        # slots 0, 1: ISR photons; 2, 3: FSR photons. Component −1 is the unbiased one.
        table, shares = _bias.subset_components(4, bias.mumu_single_share)
        component = _bias.choose_components(jax.random.fold_in(key, 7), n, shares, bias.mumu_fraction)
        slots = (component >= 0)[:, None] & table[jnp.maximum(component, 0)]
        isr, log_r_isr = biased_initial_state_radiation(k_isr, sqrt_s, max_fraction[:, None], slots[:, :2],
                                                        bias)
        system = beams - isr.sum(axis=1)
        muons = _pair_in_recoil_frame(k_pair, system, kin.MUON_MASS)
        muons, fsr, log_r_fsr = _final_state_radiation(k_fsr, muons, kin.invariant_mass_squared(system),
                                                       kin.MUON_MASS, slots[:, 2:], bias)
        slot_log_ratios = jnp.concatenate([log_r_isr, log_r_fsr], axis=1)
        weight = _bias.mixture_weight(_bias.component_log_ratios(table, slot_log_ratios), bias.mumu_fraction, shares)
    return {
        "charged": muons,
        "is_pion": jnp.zeros((n, 2), dtype=bool),
        "photons": jnp.concatenate([isr, fsr], axis=1),
        "extra_charged": jnp.zeros((n, 0, 4)),
        "relative_weight": weight,
    }


def michel_energy_fraction(u, iterations=6):
    """x = 2E_μ/m_τ in the τ rest frame from the unpolarised V−A Michel density
    2x²(3 − 2x) on [0, 1] (massless muon), by inverting F(x) = 2x³ − x⁴ = u
    with Newton steps from a bracketing start."""
    x = jnp.clip(jnp.cbrt(u / 2.0), 0.0, 1.0) * 0.5 + 0.5 * jnp.sqrt(jnp.sqrt(jnp.clip(u, 0.0, 1.0)))

    def newton(x, _):
        f = 2.0 * x**3 - x**4 - u
        df = 6.0 * x**2 - 4.0 * x**3
        x = jnp.clip(x - f / jnp.maximum(df, 1e-12), 0.0, 1.0)
        return x, None

    # unrolled: XLA fuses the six steps into one loop over the events instead of a while loop
    x, _ = jax.lax.scan(newton, x, None, length=iterations, unroll=True)
    return x


def tau_decay_charged(key, taus, decays_to_pion):
    """Charged daughter of each τ (…,4 in GeV): μ from τ→μνν̄ (Michel spectrum,
    isotropic — τ polarisation and spin correlations neglected) or π from τ→πν
    (two-body, isotropic) where ``decays_to_pion``."""
    shape = taus.shape[:-1]
    k_x, k_c, k_phi = jax.random.split(key, 3)
    x = michel_energy_fraction(jax.random.uniform(k_x, shape))
    max_energy = (kin.TAU_MASS**2 + kin.MUON_MASS**2) / (2.0 * kin.TAU_MASS)
    muon_energy = jnp.maximum(x * max_energy, kin.MUON_MASS)
    muon_momentum = jnp.sqrt(jnp.clip(muon_energy**2 - kin.MUON_MASS**2, 0.0, None))
    pion_momentum = kin.two_body_momentum(kin.TAU_MASS, kin.CHARGED_PION_MASS, 0.0)
    momentum = jnp.where(decays_to_pion, pion_momentum, muon_momentum)
    mass = jnp.where(decays_to_pion, kin.CHARGED_PION_MASS, kin.MUON_MASS)
    cos_theta = jax.random.uniform(k_c, shape, minval=-1.0, maxval=1.0)
    daughter = kin.from_polar_cos_sin(momentum, cos_theta, *_uniform_azimuth(k_phi, shape), mass)
    beta = taus[..., 1:] / taus[..., :1]
    return kin.boost(daughter, beta)


def tau_pion_fraction():
    """Probability that a τ decaying to one μ-like charged track is τ→πν:
    B(πν)/(B(μνν̄) + B(πν))."""
    return _beam.BRANCHING_TAU_TO_PI_NU / (_beam.BRANCHING_TAU_TO_MU_NU_NU + _beam.BRANCHING_TAU_TO_PI_NU)


def generate_tautau_cm(key, sqrt_s, bias: _bias.BackgroundBias | None = None):
    """e⁺e⁻ → τ⁺τ⁻(γ) with both τ → μνν̄ or πν (ISR photons, 1 + cos²θ pair).
    ``bias``: generate τ→πν with ``bias.tau_pion_probability`` per τ, weight p/q
    (:mod:`diffana.physics.bias`)."""
    n = sqrt_s.shape[0]
    k_isr, k_pair, k_mode, k_decay = jax.random.split(key, 4)
    s = sqrt_s**2
    max_fraction = 0.5 * (1.0 - (2.05 * kin.TAU_MASS) ** 2 / s)
    isr = initial_state_radiation(k_isr, sqrt_s, max_fraction[:, None])
    log_weight = jnp.zeros(n)
    beams = jnp.stack([sqrt_s, jnp.zeros(n), jnp.zeros(n), jnp.zeros(n)], axis=-1)
    taus = _pair_in_recoil_frame(k_pair, beams - isr.sum(axis=1), kin.TAU_MASS)
    if bias is None:
        is_pion = jax.random.uniform(k_mode, (n, 2)) < tau_pion_fraction()
    else:
        is_pion, log_w_mode = _bias.choose_with_probability(k_mode, (n, 2), tau_pion_fraction(),
                                                            bias.tau_pion_probability)
        log_weight = log_weight + jnp.sum(log_w_mode, axis=-1)
    charged = tau_decay_charged(k_decay, taus, is_pion)
    return {
        "charged": charged,
        "is_pion": is_pion,
        "photons": isr,
        "extra_charged": jnp.zeros((n, 0, 4)),
        "relative_weight": jnp.exp(log_weight),
    }


EEMUMU_MIN_DIMUON_MASS = 0.5  # GeV, generator-level cut the 18.9 nb refers to (assumed)


def breit_wheeler_cross_section(w, mass):
    """σ(γγ → ℓ⁺ℓ⁻) at γγ mass ``w`` (GeV) for lepton ``mass`` (GeV), in GeV⁻²."""
    beta = jnp.sqrt(jnp.clip(1.0 - 4.0 * mass**2 / w**2, 0.0, 1.0))
    log = jnp.log((1.0 + beta) / jnp.maximum(1.0 - beta, 1e-300))
    return 2.0 * jnp.pi * ALPHA**2 / w**2 * ((3.0 - beta**4) * log - 2.0 * beta * (2.0 - beta**2))


EEMUMU_TAG_SHARES = (0.45, 0.45, 0.1)
"""Share of the biased eeμμ components: e⁻ tagged, e⁺ tagged, both tagged (preselected:
44%, 48%, 8% of Σw)."""
_EEMUMU_TABLE = ((True, True, True, False, False, False),
                 (True, True, False, True, False, False),
                 (True, True, False, False, True, True))
"""Per component (rows, as :data:`EEMUMU_TAG_SHARES`): which variables (slots of
:func:`_bias.component_log_ratios`: the z pair, cos θ*, Q²₁ and Q²₂ in the single-tag
shape, Q²₁ and Q²₂ in the double-tag shape) it draws biased. Every component draws W, Y
and cos θ* into the acceptance; its tagged e± get a q_T shape."""


class _EemumuComponents(NamedTuple):
    """Which biased eeμμ component drew each event."""

    component: jax.Array
    """(n,) int: −1 unbiased, 0 e⁻ tagged, 1 e⁺ tagged, 2 both tagged."""
    table: jax.Array
    """(3, 6) bool: :data:`_EEMUMU_TABLE`."""
    shares: jax.Array
    """(3,): :data:`EEMUMU_TAG_SHARES`."""

    @property
    def biased(self):
        """(n,) bool: drawn by a biased component (W, Y and cos θ* biased)."""
        return self.component >= 0

    @property
    def single_tag(self):
        """(n, 2) bool: this e∓'s Q² drawn in the single-tag window."""
        return self.component[:, None] == jnp.array([0, 1])

    @property
    def double_tag(self):
        """(n,) bool: both Q² drawn in the double-tag window."""
        return self.component == 2


def _eemumu_components(key, n, bias) -> _EemumuComponents:
    """Draw the mixture component of each of ``n`` eeμμ events."""
    shares = jnp.array(EEMUMU_TAG_SHARES)
    component = _bias.choose_components(key, n, shares, bias.eemumu_fraction)
    return _EemumuComponents(component, jnp.array(_EEMUMU_TABLE), shares)


class _TagWindow(NamedTuple):
    """Per e∓ (arrays shaped like z): the q_T range a tagged e± is drawn in."""

    low: jax.Array
    """GeV: lower end (the shape's)."""
    high: jax.Array
    """GeV: upper end: the shape's, or less where the e± would leave the ECL hole or Q² exceed Q²_max."""
    usable: jax.Array
    """bool: the range is not empty (elsewhere the tagged Q² is drawn as unbiased: g = p)."""


def _tag_window(z, beam_energy, q2_max, shape: _bias.PeakedShape, angle_max) -> _TagWindow:
    """q_T range of a tagged e± of energy fraction 1 − z (GeV): ``shape``'s, capped at
    E_e·sin ``angle_max`` (deg, CM, (e⁻, e⁺): the e± stays in the ECL hole) and at the q_T that gives
    Q² = ``q2_max`` (Q² = (q_T² + m_e²z²)/(1 − z))."""
    angle_cap = beam_energy * (1.0 - z) * jnp.sin(jnp.radians(jnp.array(angle_max)))
    virtuality_cap = jnp.sqrt(jnp.clip(q2_max * (1.0 - z) - kin.ELECTRON_MASS**2 * z**2, 0.0, None))
    high = jnp.minimum(shape.high, jnp.minimum(angle_cap, virtuality_cap))
    low = jnp.full(z.shape, shape.low)
    usable = high > low * (1.0 + 1e-6)
    return _TagWindow(low, jnp.where(usable, high, shape.high), usable)


def _tagged_log_ratio(q2, z, q2_min, q2_max, shape, window: _TagWindow):
    """ln g/p of a photon's Q² for g: q_T = √(Q²(1 − z) − m_e²z²) from ``shape`` in ``window``
    (g = p where the window is empty), p: Q² log-uniform on [Q²_min, Q²_max]. Densities in
    ln Q²: g(ln Q²) = g(ln q_T)·(q_T² + m_e²z²)/(2 q_T²)."""
    mass_term = kin.ELECTRON_MASS**2 * z**2
    q_t2 = jnp.maximum(q2 * (1.0 - z) - mass_term, 1e-300)
    log_g = (_bias.peaked_log_log_density(jnp.sqrt(q_t2), shape, window.low, window.high)
             + jnp.log(q_t2 + mass_term) - jnp.log(2.0 * q_t2))
    log_ratio = log_g + jnp.log(jnp.log(q2_max / q2_min))
    return jnp.where(window.usable, log_ratio, 0.0)


def _biased_virtualities(key, z, beam_energy, q2_min, q2_max, components, bias):
    """Both photons' Q² (n, 2): log-uniform on [Q²_min, Q²_max], or, for a tagged e±, from its
    q_T drawn in the single- or double-tag shape (:func:`_tag_window`).
    Returns ``(q2, log_ratios (n, 4))``: ln g/p of the single-tag shape (e⁻, e⁺), then of
    the double-tag shape, each at the drawn Q² whichever component drew it."""
    u = jax.random.uniform(key, z.shape)
    q2 = q2_min * jnp.exp(jnp.log(q2_max / q2_min) * u)
    shapes = (bias.eemumu_tag_pt, bias.eemumu_double_tag_pt)
    windows = [_tag_window(z, beam_energy, q2_max, shape, bias.eemumu_tag_angle_max) for shape in shapes]
    for shape, window, drawn in zip(shapes, windows, (components.single_tag, components.double_tag[:, None])):
        q_t = _bias.peaked_log_draw(u, shape, window.low, window.high)
        q2_tag = (q_t**2 + kin.ELECTRON_MASS**2 * z**2) / (1.0 - z)
        q2 = jnp.where(drawn & window.usable, q2_tag, q2)
    ratios = [_tagged_log_ratio(q2, z, q2_min, q2_max, shape, window) for shape, window in zip(shapes, windows)]
    return q2, jnp.concatenate(ratios, axis=1)


def _photon_virtualities(photons):
    """Q² = −q² (GeV²) of each (…, 2, 4) photon four-momentum q = beam − scattered e±."""
    return -kin.invariant_mass_squared(photons)


def generate_eemumu_cm(key, sqrt_s, bias: _bias.BackgroundBias | None = None,
                       min_dimuon_mass=EEMUMU_MIN_DIMUON_MASS, virtuality_below_pair_mass=True):
    """e⁺e⁻ → e⁺e⁻μ⁺μ⁻ via γγ → μ⁺μ⁻ in the equivalent-photon approximation.

    Each beam emits a photon with energy fraction z (log-uniform proposal,
    weighted by (1 + (1 − z)²)/2 · ln(Q²_max/Q²_min)) and virtuality Q²
    log-uniform in [m_e²z²/(1 − z), Q²_max = z₁z₂s ≈ W²]; the scattered e± carry the
    opposite transverse momentum and mostly escape along the beams. The muons
    follow the Breit–Wheeler angular distribution in the γγ frame (about its
    z axis). Events are weighted (``relative_weight``, mean ≈ 1 after
    normalisation by the caller); W = M_μμ < ``min_dimuon_mass`` gets weight 0.
    ``virtuality_below_pair_mass``: a photon with Q² above the *actual* W² of the pair
    gets weight 0 too. The proposal's cap z₁z₂s is the nominal W²; a tagged e± with
    Q₁² near it leaves W² ≈ z₁z₂s − Q₁²(1 − z₂) far below, where the EPA no longer
    holds and the 1/W² of σ_γγ made single events weigh ~10³× the mean. ``False``
    keeps only the proposal cap (the model before 2026-12-03).
    ``bias``: a defensive mixture whose biased components draw single- or double-tag
    events into the Z'→invisible acceptance — W and the γγ rapidity (both z),
    a central cos θ*, the tagged e±'s Q² from its q_T and angle window
    (:mod:`diffana.physics.bias`); the weight gains the factor p/q.
    """
    n = sqrt_s.shape[0]
    keys = jax.random.split(key, 6)
    s = sqrt_s**2
    beam_energy = 0.5 * sqrt_s[:, None]
    z_min = min_dimuon_mass**2 / s[:, None]
    z_max = 1.0 - 1e-6
    biased = bias is not None and bias.eemumu_fraction > 0.0
    if biased:
        components = _eemumu_components(jax.random.fold_in(key, 7), n, bias)
        z, log_rz = _bias.photon_pair_fractions(keys[0], sqrt_s, z_min, z_max, components.biased,
                                                bias.eemumu_mass, bias.eemumu_pair_rapidity_max,
                                                bias.eemumu_pair_rapidity_apex)
    else:
        z = z_min * jnp.exp(jnp.log(z_max / z_min) * jax.random.uniform(keys[0], (n, 2)))
    q2_min = kin.ELECTRON_MASS**2 * z**2 / (1.0 - z)
    # virtual photons with Q² above the γγ mass² no longer produce the pair
    # efficiently: cut the 1/Q² spectrum at W² ≈ z₁z₂s
    q2_max = jnp.maximum(jnp.prod(z, axis=-1, keepdims=True) * s[:, None], 10.0 * q2_min)
    log_q2 = jnp.log(q2_max / q2_min)
    if biased:
        q2, log_rq = _biased_virtualities(keys[1], z, beam_energy, q2_min, q2_max, components, bias)
    else:
        q2 = q2_min * jnp.exp(log_q2 * jax.random.uniform(keys[1], (n, 2)))
    weight = jnp.prod(0.5 * (1.0 + (1.0 - z) ** 2) * log_q2 * jnp.log(z_max / z_min), axis=-1)

    # scattered e∓: energy E(1 − z), transverse momentum from Q² ≈ (q_T² + m²z²)/(1 − z)
    energy_out = beam_energy * (1.0 - z)
    q_t = jnp.sqrt(jnp.clip(q2 * (1.0 - z) - kin.ELECTRON_MASS**2 * z**2, 0.0, None))
    q_t = jnp.minimum(q_t, 0.99 * energy_out)
    cos_phi, sin_phi = _uniform_azimuth(keys[2], (n, 2))
    p_z = jnp.sqrt(jnp.clip(energy_out**2 - q_t**2 - kin.ELECTRON_MASS**2, 0.0, None))
    p_z = p_z * jnp.array([1.0, -1.0])  # e⁻ keeps +z, e⁺ keeps −z
    electrons = jnp.stack([energy_out, q_t * cos_phi, q_t * sin_phi, p_z], axis=-1)
    p_beam = jnp.sqrt(beam_energy**2 - kin.ELECTRON_MASS**2) * jnp.array([1.0, -1.0])
    beams = jnp.stack([beam_energy[:, 0] + 0 * z[:, 0]] * 2, axis=1)
    beams = jnp.stack([beams, jnp.zeros((n, 2)), jnp.zeros((n, 2)), p_beam + 0 * z], axis=-1)
    photons = beams - electrons  # (n, 2, 4): q = beam − scattered e± per side
    system = photons.sum(axis=1)
    w2 = kin.invariant_mass_squared(system)
    w = jnp.sqrt(jnp.clip(w2, 1e-12, None))
    accepted = (w2 > min_dimuon_mass**2) & (system[:, 0] > w)
    if virtuality_below_pair_mass:
        accepted = accepted & jnp.all(_photon_virtualities(photons) <= w2[:, None], axis=1)

    # γγ → μ⁺μ⁻: proposal ∝ 1/(1 − β²c²), weighted to the Breit–Wheeler density
    beta = jnp.sqrt(jnp.clip(1.0 - 4.0 * kin.MUON_MASS**2 / jnp.maximum(w2, 1e-12), 1e-12, 1.0 - 1e-15))
    atanh_beta = jnp.arctanh(beta)
    if biased:
        # the μμ system's own rapidity, which the tagged e±'s Q² shifts from ½ ln(z₁/z₂)
        light_cone = jnp.maximum(system[:, 0] + jnp.array([[1.0], [-1.0]]) * system[:, 3], 1e-12)
        rapidity = jnp.where(accepted, 0.5 * jnp.log(light_cone[0] / light_cone[1]), 0.0)
        cos_theta, log_rc = _bias.central_cos(keys[3], beta, rapidity, components.biased, bias)
        slot_log_ratios = jnp.concatenate([log_rz[:, None], log_rc[:, None], log_rq], axis=1)
        weight = weight * _bias.mixture_weight(_bias.component_log_ratios(components.table, slot_log_ratios),
                                               bias.eemumu_fraction, components.shares)
    else:
        cos_theta = jnp.tanh(jax.random.uniform(keys[3], (n,), minval=-1.0, maxval=1.0) * atanh_beta) / beta
    sin2 = 1.0 - cos_theta**2
    shape = (1.0 + 2.0 * beta**2 * sin2 - beta**4 - beta**4 * sin2**2) / (1.0 - beta**2 * cos_theta**2)
    weight = weight * shape * 2.0 * atanh_beta / w2
    p_star = kin.two_body_momentum(w, kin.MUON_MASS, kin.MUON_MASS)
    minus = kin.from_polar_cos_sin(p_star, cos_theta, *_uniform_azimuth(keys[4], (n,)), kin.MUON_MASS)
    plus = minus * jnp.array([1.0, -1.0, -1.0, -1.0])
    safe_system = jnp.where(accepted[:, None], system, jnp.array([1.0, 0.0, 0.0, 0.0]))
    muons = kin.boost(jnp.stack([plus, minus], axis=1), (safe_system[:, 1:] / safe_system[:, :1])[:, None, :])
    weight = jnp.where(accepted, weight, 0.0)
    return {
        "charged": muons,
        "is_pion": jnp.zeros((n, 2), dtype=bool),
        "photons": jnp.zeros((n, 0, 4)),
        "extra_charged": electrons,
        "relative_weight": weight,
    }
