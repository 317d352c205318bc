"""Shared physical and collider constants for the Belle II examples.

Plain Python floats (float64 when they enter JAX, since importing diffana enables
``jax_enable_x64``). Energies, momenta and masses in GeV, angles in rad, cross
sections in the unit named by the constant.

Sources: PDG 2024 for masses and couplings; SuperKEKB design/operation values for
the beams (e⁻ 7.004 GeV, e⁺ 4.002 GeV, each beam at 41.5 mrad to the solenoid axis).
"""

import math

# --- Particle masses (GeV), PDG 2024 -------------------------------------------
ELECTRON_MASS = 0.51099895e-3
MUON_MASS = 0.1056583755
TAU_MASS = 1.77686
PION_MASS = 0.13957039

# --- Couplings -------------------------------------------------------------------
FINE_STRUCTURE_CONSTANT = 1.0 / 137.035999084
"""α_em at q² = 0 (Thomson limit). Tree-level cross sections in diffana use this
value; α(s = 10.58² GeV²) ≈ 1/132 would raise σ ∝ α² by ≈ 7 % (vacuum polarisation,
which experiments usually quote as a separate |1/(1−Π(s))|² factor)."""

ELEMENTARY_CHARGE = math.sqrt(4.0 * math.pi * FINE_STRUCTURE_CONSTANT)
"""e = √(4πα) in natural (Heaviside–Lorentz) units."""

# --- Unit conversions --------------------------------------------------------------
HBARC_SQUARED_GEV2_MB = 0.3893793721
"""(ħc)² in GeV² mb: a cross section of 1 GeV⁻² equals 0.389 mb."""

GEV_MINUS2_TO_NB = HBARC_SQUARED_GEV2_MB * 1.0e6
"""1 GeV⁻² = 3.894e5 nb."""

GEV_MINUS2_TO_PB = HBARC_SQUARED_GEV2_MB * 1.0e9
"""1 GeV⁻² = 3.894e8 pb."""

GEV_MINUS2_TO_FB = HBARC_SQUARED_GEV2_MB * 1.0e12
"""1 GeV⁻² = 3.894e11 fb."""

# --- SuperKEKB beams -----------------------------------------------------------------
ELECTRON_BEAM_ENERGY = 7.004
"""HER (e⁻) beam energy in GeV."""

POSITRON_BEAM_ENERGY = 4.002
"""LER (e⁺) beam energy in GeV."""

BEAM_CROSSING_HALF_ANGLE = 41.5e-3
"""Angle of each beam to the solenoid (z) axis in rad; 83 mrad full crossing.
The e⁻ beam points along +z tilted towards +x, the e⁺ beam along −z, also tilted
so that the boost of the CM frame has a +x component."""

ELECTRON_BEAM_ENERGY_SPREAD = 5.1e-3
"""Gaussian energy spread of the e⁻ beam in GeV (≈)."""

POSITRON_BEAM_ENERGY_SPREAD = 2.4e-3
"""Gaussian energy spread of the e⁺ beam in GeV (≈)."""


def _beam_four_momenta():
    """Lab-frame four-momenta (E, px, py, pz) in GeV of the e⁻ and e⁺ beams."""
    angle = BEAM_CROSSING_HALF_ANGLE
    p_minus = math.sqrt(ELECTRON_BEAM_ENERGY**2 - ELECTRON_MASS**2)
    p_plus = math.sqrt(POSITRON_BEAM_ENERGY**2 - ELECTRON_MASS**2)
    electron = (ELECTRON_BEAM_ENERGY, p_minus * math.sin(angle), 0.0, p_minus * math.cos(angle))
    positron = (POSITRON_BEAM_ENERGY, p_plus * math.sin(angle), 0.0, -p_plus * math.cos(angle))
    return electron, positron


ELECTRON_BEAM_FOUR_MOMENTUM, POSITRON_BEAM_FOUR_MOMENTUM = _beam_four_momenta()
"""Lab-frame (E, px, py, pz) in GeV of the nominal e⁻ and e⁺ beams."""

CM_FOUR_MOMENTUM_LAB = tuple(
    a + b for a, b in zip(ELECTRON_BEAM_FOUR_MOMENTUM, POSITRON_BEAM_FOUR_MOMENTUM)
)
"""Lab-frame (E, px, py, pz) in GeV of the e⁺e⁻ system: ≈ (11.006, 0.457, 0, 2.999)."""

S_NOMINAL = CM_FOUR_MOMENTUM_LAB[0] ** 2 - sum(c**2 for c in CM_FOUR_MOMENTUM_LAB[1:])
"""Nominal squared CM energy s in GeV² (≈ 111.93 GeV²)."""

SQRT_S = math.sqrt(S_NOMINAL)
"""Nominal CM energy √s in GeV (≈ 10.580 GeV, the Υ(4S))."""

CM_BOOST_BETA_GAMMA = math.sqrt(sum(c**2 for c in CM_FOUR_MOMENTUM_LAB[1:])) / SQRT_S
"""|βγ| of the CM frame in the lab (≈ 0.287)."""

# --- Branching fractions ----------------------------------------------------------------
TAU_TO_MUON_BRANCHING_FRACTION = 0.1739
"""B(τ→μν̄ν), PDG."""

# --- Muon anomalous magnetic moment -------------------------------------------------------
MUON_G_MINUS_2_ANOMALY = 251e-11
"""Δa_μ = a_μ(exp) − a_μ(SM) = (251 ± 59)×10⁻¹¹: FNAL+BNL 2021 against the 2020
Theory-Initiative (data-driven HVP) SM prediction. The 2025 Theory-Initiative
prediction (lattice-QCD HVP) agrees with the 2025 world average, which largely
removes the anomaly; diffana keeps the 2021 value to draw the historical band."""

MUON_G_MINUS_2_ANOMALY_UNCERTAINTY = 59e-11
"""1σ uncertainty of :data:`MUON_G_MINUS_2_ANOMALY`."""
