"""Three-body phase-space samplers (pure JAX).

Four-momenta are arrays ``(..., 4)`` ordered (E, px, py, pz) in GeV; the metric is
(+, −, −, −); the four-vector algebra (boosts, invariant masses, two-body momenta) is
:mod:`diffana.physics.kinematics`'s. Phase space is the Lorentz-invariant

    dΦ₃ = (2π)⁴ δ⁴(P − Σp) Π d³pᵢ / ((2π)³ 2Eᵢ),

so that a sampler's weights w satisfy  E[f(x) w(x)] = ∫ f dΦ₃  (GeV² for three
bodies). Two samplers are provided with different internal routes, so that each
validates the other:

* :func:`sample_three_body_dalitz` — the Dalitz invariants m²₁₃, m²₂₃ drawn with
  densities ∝ 1/(y + a) (y = m²ᵢ₃ − mᵢ²), multi-channel over the order of the
  two draws, then a uniform random orientation. Made for final-state radiation
  of particle 3 off particles 1 and 2: it flattens the collinear peaks
  (1/(m²ᵢ₃ − mᵢ²) propagators) and the soft corner (their product).
* :func:`sample_three_body_recoil` — sequential two-body decays P → 3 + (12),
  (12) → 1 + 2 with m²₁₂ flat: no importance sampling, a plain cross-check.
"""

import math

import jax
import jax.numpy as jnp

from diffana.physics.kinematics import boost, two_body_momentum

__all__ = [
    "random_rotation_matrices",
    "sample_three_body_dalitz",
    "sample_three_body_recoil",
    "dalitz_density",
]


def random_rotation_matrices(key, n):
    """``n`` rotation matrices ``(n, 3, 3)`` drawn uniformly (Haar measure) on SO(3).

    Uses Shoemake's uniform unit quaternions.
    """
    u1, u2, u3 = jax.random.uniform(key, (3, n), dtype=jnp.float64)
    a = jnp.sqrt(1.0 - u1)
    b = jnp.sqrt(u1)
    x, y = a * jnp.sin(2 * math.pi * u2), a * jnp.cos(2 * math.pi * u2)
    z, w = b * jnp.sin(2 * math.pi * u3), b * jnp.cos(2 * math.pi * u3)
    row0 = jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1)
    row1 = jnp.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1)
    row2 = jnp.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1)
    return jnp.stack([row0, row1, row2], axis=-2)


# --- Dalitz-plane sampler ---------------------------------------------------------------


def _partner_range(pair_mass_squared, mass_i, mass_j, mass_k, s):
    """Range of m²_kj (GeV²) at fixed m²_ij for P → i j k with √s = √P².

    Standard Dalitz boundary, evaluated in the (ij) rest frame (PDG kinematics review).
    """
    m_ij = jnp.sqrt(pair_mass_squared)
    e_j = (pair_mass_squared - mass_i**2 + mass_j**2) / (2.0 * m_ij)
    e_k = (s - pair_mass_squared - mass_k**2) / (2.0 * m_ij)
    p_j = jnp.sqrt(jnp.maximum(e_j**2 - mass_j**2, 0.0))
    p_k = jnp.sqrt(jnp.maximum(e_k**2 - mass_k**2, 0.0))
    total = (e_j + e_k) ** 2
    return total - (p_j + p_k) ** 2, total - (p_j - p_k) ** 2


def _draw_shifted_log(u, low, high, offset):
    """Invert the CDF of density ∝ 1/(y + offset) on [low, high]; flat if offset is None."""
    if offset is None:
        return low + u * (high - low)
    return (low + offset) * ((high + offset) / (low + offset)) ** u - offset


def _shifted_log_density(y, low, high, offset):
    """Normalised density ∝ 1/(y + offset) on [low, high] (flat if offset is None)."""
    if offset is None:
        return 1.0 / (high - low)
    return 1.0 / ((y + offset) * jnp.log((high + offset) / (low + offset)))


def dalitz_density(m13_squared, m23_squared, sqrt_s, masses, offset):
    """Density (GeV⁻⁴) in the (m²₁₃, m²₂₃) plane of :func:`sample_three_body_dalitz`.

    Average of the two channels (m²₁₃ drawn first, or m²₂₃ drawn first); each
    draws y = m²ᵢ₃ − mᵢ² with density ∝ 1/(y + offset) over its allowed range.
    """
    m1, m2, m3 = masses
    s = sqrt_s**2
    y13 = m13_squared - m1**2
    y23 = m23_squared - m2**2
    lo13, hi13 = (m1 + m3) ** 2 - m1**2, (sqrt_s - m2) ** 2 - m1**2
    lo23, hi23 = (m2 + m3) ** 2 - m2**2, (sqrt_s - m1) ** 2 - m2**2
    # channel A: m²13 first, then m²23 inside the boundary at that m²13
    r23_lo, r23_hi = _partner_range(m13_squared, m1, m3, m2, s)
    density_a = _shifted_log_density(y13, lo13, hi13, offset) * _shifted_log_density(
        y23, r23_lo - m2**2, r23_hi - m2**2, offset
    )
    # channel B: m²23 first, then m²13
    r13_lo, r13_hi = _partner_range(m23_squared, m2, m3, m1, s)
    density_b = _shifted_log_density(y23, lo23, hi23, offset) * _shifted_log_density(
        y13, r13_lo - m1**2, r13_hi - m1**2, offset
    )
    return 0.5 * (density_a + density_b)


def _momenta_from_dalitz(m13_squared, m23_squared, sqrt_s, masses, rotation):
    """CM four-momenta ``(n, 3, 4)`` of particles 1, 2, 3 from Dalitz invariants."""
    m1, m2, m3 = masses
    s = sqrt_s**2
    e1 = (s + m1**2 - m23_squared) / (2.0 * sqrt_s)
    e2 = (s + m2**2 - m13_squared) / (2.0 * sqrt_s)
    e3 = sqrt_s - e1 - e2
    p1 = jnp.sqrt(jnp.maximum(e1**2 - m1**2, 0.0))
    p2 = jnp.sqrt(jnp.maximum(e2**2 - m2**2, 0.0))
    p3 = jnp.sqrt(jnp.maximum(e3**2 - m3**2, 0.0))
    # p⃗2 = −(p⃗1 + p⃗3) fixes the opening angle between particles 1 and 3.
    cos13 = jnp.clip((p2**2 - p1**2 - p3**2) / (2.0 * p1 * p3), -1.0, 1.0)
    sin13 = jnp.sqrt(1.0 - cos13**2)
    zeros = jnp.zeros_like(p1)
    vec1 = jnp.stack([zeros, zeros, p1], axis=-1)
    vec3 = jnp.stack([p3 * sin13, zeros, p3 * cos13], axis=-1)
    vec1 = jnp.einsum("nij,nj->ni", rotation, vec1)
    vec3 = jnp.einsum("nij,nj->ni", rotation, vec3)
    vec2 = -(vec1 + vec3)
    four = [
        jnp.concatenate([e[:, None], v], axis=-1)
        for e, v in ((e1, vec1), (e2, vec2), (e3, vec3))
    ]
    return jnp.stack(four, axis=1)


def sample_three_body_dalitz(key, n, sqrt_s, masses, offset=None):
    """Draw ``n`` three-body final states in the CM frame, importance-sampled in m²ᵢ₃.

    Parameters
    ----------
    key : PRNG key.
    n : int (static) number of events.
    sqrt_s : CM energy √s in GeV.
    masses : (m1, m2, m3) in GeV. Particle 3 is the radiated one (the Z').
    offset : float or None, GeV². Each y = m²ᵢ₃ − mᵢ² is drawn with density
        ∝ 1/(y + offset); ``None`` draws the Dalitz plane flat.

    Returns
    -------
    momenta : ``(n, 3, 4)`` CM four-momenta (E, px, py, pz) in GeV of particles 1, 2, 3.
    weights : ``(n,)`` phase-space weights in GeV²: mean(f · w) → ∫ f dΦ₃.
    """
    m1, m2, m3 = masses
    s = sqrt_s**2
    key_channel, key_u1, key_u2, key_rotation = jax.random.split(key, 4)
    use_b = jax.random.bernoulli(key_channel, 0.5, (n,))
    u1 = jax.random.uniform(key_u1, (n,), dtype=jnp.float64)
    u2 = jax.random.uniform(key_u2, (n,), dtype=jnp.float64)

    # "first" is the pair (i,3) drawn first: i = 1 in channel A, i = 2 in channel B.
    first_mass = jnp.where(use_b, m2, m1)
    other_mass = jnp.where(use_b, m1, m2)
    first_lo = (first_mass + m3) ** 2 - first_mass**2
    first_hi = (sqrt_s - other_mass) ** 2 - first_mass**2
    y_first = _draw_shifted_log(u1, first_lo, first_hi, offset)
    first_pair = y_first + first_mass**2
    r_lo, r_hi = _partner_range(first_pair, first_mass, m3, other_mass, s)
    y_second = _draw_shifted_log(u2, r_lo - other_mass**2, r_hi - other_mass**2, offset)
    second_pair = y_second + other_mass**2
    m13_squared = jnp.where(use_b, second_pair, first_pair)
    m23_squared = jnp.where(use_b, first_pair, second_pair)

    rotation = random_rotation_matrices(key_rotation, n)
    momenta = _momenta_from_dalitz(m13_squared, m23_squared, sqrt_s, masses, rotation)
    # dΦ₃ = dm²₁₃ dm²₂₃ dR / (128 π³ s) with dR the normalised Haar measure.
    density = dalitz_density(m13_squared, m23_squared, sqrt_s, masses, offset)
    weights = 1.0 / (128.0 * math.pi**3 * s * density)
    return momenta, weights


# --- Sequential two-body sampler ---------------------------------------------------------


def _isotropic_directions(key, n):
    u_cos, u_phi = jax.random.uniform(key, (2, n), dtype=jnp.float64)
    cos_theta = 2.0 * u_cos - 1.0
    sin_theta = jnp.sqrt(1.0 - cos_theta**2)
    phi = 2.0 * math.pi * u_phi
    return jnp.stack([sin_theta * jnp.cos(phi), sin_theta * jnp.sin(phi), cos_theta], -1)


def sample_three_body_recoil(key, n, sqrt_s, masses):
    """Draw ``n`` three-body states as P → 3 + (12), (12) → 1 + 2, m²₁₂ flat.

    Same arguments and returns as :func:`sample_three_body_dalitz` (without
    importance sampling). Weight per event (GeV²):
    w = (m²₁₂ range)/(2π) · p*/(4π√s) · p*₁₂/(4π m₁₂), from
    dΦ₃ = dm²₁₂/(2π) dΦ₂(P→3,(12)) dΦ₂((12)→1,2) and Φ₂ = p*/(4π·M).
    """
    m1, m2, m3 = masses
    key_mass, key_dir1, key_dir2 = jax.random.split(key, 3)
    lo, hi = (m1 + m2) ** 2, (sqrt_s - m3) ** 2
    m12_squared = lo + (hi - lo) * jax.random.uniform(key_mass, (n,), dtype=jnp.float64)
    m12 = jnp.sqrt(m12_squared)
    p_star = two_body_momentum(sqrt_s, m3, m12)
    p_pair = two_body_momentum(m12, m1, m2)

    direction_3 = _isotropic_directions(key_dir1, n)
    vec3 = p_star[:, None] * direction_3
    e3 = jnp.sqrt(p_star**2 + m3**2)
    e12 = jnp.sqrt(p_star**2 + m12_squared)
    direction_1 = _isotropic_directions(key_dir2, n)
    q1 = jnp.concatenate(
        [jnp.sqrt(p_pair**2 + m1**2)[:, None], p_pair[:, None] * direction_1], -1
    )
    q2 = jnp.concatenate(
        [jnp.sqrt(p_pair**2 + m2**2)[:, None], -p_pair[:, None] * direction_1], -1
    )
    beta_pair = -vec3 / e12[:, None]
    q1 = boost(q1, beta_pair)
    q2 = boost(q2, beta_pair)
    k = jnp.concatenate([e3[:, None], vec3], -1)
    momenta = jnp.stack([q1, q2, k], axis=1)
    weights = (hi - lo) / (2.0 * math.pi) * p_star / (4.0 * math.pi * sqrt_s) * p_pair / (
        4.0 * math.pi * m12
    )
    return momenta, weights
