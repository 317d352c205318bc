"""Four-vector kinematics for the Belle II generator: boosts, frames, angles.

The one home of diffana's four-vector algebra (the phase-space samplers and the
theory use it too). Four-momenta are arrays ``(..., 4)`` ordered ``(E, px, py, pz)``
in GeV, metric (+, −, −, −); velocities are ``(..., 3)`` in units of c. The lab
frame has z along the solenoid axis (the electron-beam side), x in the ring
plane; the beams cross at ±41.5 mrad to z. The centre-of-mass (CM) frame is the
pure boost of the lab to zero total momentum followed by the rotation about y
that puts the electron beam on +z (Belle II's convention). Everything here is
pure ``jax.numpy`` and works on any batch shape.
"""

from __future__ import annotations

import jax.numpy as jnp

from diffana.physics import _beam

ELECTRON_MASS = _beam.ELECTRON_MASS
MUON_MASS = _beam.MUON_MASS
TAU_MASS = _beam.TAU_MASS
CHARGED_PION_MASS = _beam.CHARGED_PION_MASS


def beam_four_momenta(electron_energy, positron_energy, half_crossing_angle=_beam.HALF_CROSSING_ANGLE):
    """Lab four-momenta (GeV) of the e⁻ and e⁺ beams.

    ``electron_energy``/``positron_energy`` in GeV (any broadcastable shape),
    ``half_crossing_angle`` in rad: each beam's angle to the solenoid axis; both
    beams lean towards +x so the CM moves along (+x, +z).
    """
    electron_energy = jnp.asarray(electron_energy, dtype=float)
    positron_energy = jnp.asarray(positron_energy, dtype=float)
    pe = jnp.sqrt(electron_energy**2 - ELECTRON_MASS**2)
    pp = jnp.sqrt(positron_energy**2 - ELECTRON_MASS**2)
    s, c = jnp.sin(half_crossing_angle), jnp.cos(half_crossing_angle)
    zero = jnp.zeros_like(pe)
    electron = jnp.stack([electron_energy, pe * s, zero, pe * c], axis=-1)
    positron = jnp.stack([positron_energy + zero, pp * s + zero, zero, -pp * c + zero], axis=-1)
    return electron, positron


def minkowski_dot(a, b):
    """Minkowski product a·b = E_a E_b − p⃗_a·p⃗_b (GeV²) of four-vectors ``(..., 4)``."""
    return a[..., 0] * b[..., 0] - jnp.sum(a[..., 1:] * b[..., 1:], axis=-1)


def invariant_mass_squared(p):
    """Invariant mass squared p² (GeV²)."""
    return minkowski_dot(p, p)


def boost(p, beta):
    """Boost four-momenta ``p`` (…,4) by velocity ``beta`` (…,3, units of c).

    An active boost: a particle at rest ends up moving with +``beta``, and
    ``boost(boost(p, beta), -beta)`` is ``p``. Leading axes broadcast.
    """
    beta = jnp.asarray(beta)
    beta2 = jnp.sum(beta * beta, axis=-1)
    gamma = 1.0 / jnp.sqrt(1.0 - beta2)
    bp = jnp.sum(beta * p[..., 1:], axis=-1)
    # (γ−1)/β² written as γ²/(γ+1): finite for β → 0.
    factor = gamma**2 / (gamma + 1.0)
    energy = gamma * (p[..., 0] + bp)
    momentum = p[..., 1:] + (factor * bp + gamma * p[..., 0])[..., None] * beta
    return jnp.concatenate([energy[..., None], momentum], axis=-1)


def rotate_y(p, angle):
    """Rotate the 3-momentum of ``p`` about the y axis by ``angle`` (rad)."""
    c, s = cos_sin(angle)
    px = c * p[..., 1] + s * p[..., 3]
    pz = -s * p[..., 1] + c * p[..., 3]
    return jnp.stack([p[..., 0], px, p[..., 2], pz], axis=-1)


def cm_frame(electron, positron):
    """Parameters of the lab→CM transform for given beams.

    Returns ``(beta, angle)``: the lab velocity of the CM (…,3) and the rotation
    angle about y (rad) that aligns the boosted electron beam with +z.
    """
    total = electron + positron
    beta = total[..., 1:] / total[..., :1]
    electron_cm = boost(electron, -beta)
    angle = atan2(electron_cm[..., 1], electron_cm[..., 3])
    return beta, angle


def lab_to_cm(p, beta, angle):
    """Lab four-momenta → CM for a frame from :func:`cm_frame` (broadcasts)."""
    # the boosted e⁻ sits at angle `angle` from +z in the xz plane: rotate it back
    return rotate_y(boost(p, -beta), -angle)


def cm_to_lab(p, beta, angle):
    """CM four-momenta → lab, the inverse of :func:`lab_to_cm`."""
    return boost(rotate_y(p, angle), beta)


def momentum_magnitude(p):
    """|p⃗| (GeV)."""
    return jnp.sqrt(jnp.sum(p[..., 1:] ** 2, axis=-1))


def transverse_momentum(p):
    """pT w.r.t. the frame's z axis (GeV)."""
    return jnp.sqrt(p[..., 1] ** 2 + p[..., 2] ** 2)


# Cephes atan(t) = t + t·z·P(z)/Q(z), z = t², on |t| ≤ 0.66 (Moshier, Cephes Math Library)
_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (1.0, 2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)


def _horner(z, coefficients):
    result = jnp.full_like(z, coefficients[0])
    for c in coefficients[1:]:
        result = result * z + c
    return result


def atan2(y, x):
    """atan2(y, x) (rad, in [−π, π]) from arithmetic and selects only.

    Same result as ``jnp.arctan2`` to a few ulp (≲ 4e-16 rad; tested), but XLA
    vectorises it: on CPU ``jnp.arctan2`` is a scalar libm call (≈20 ns in
    float64), which made the angles a large share of the generator's time.
    atan2(0, 0) = 0 (as libm); signed zeros and infinities are not special-cased.
    """
    ax, ay = jnp.abs(x), jnp.abs(y)
    big, small = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
    t = small / jnp.where(big > 0, big, 1.0)  # in [0, 1]
    reduced = t > 0.66  # atan t = π/4 + atan((t − 1)/(t + 1))
    u = jnp.where(reduced, (t - 1.0) / (t + 1.0), t)
    z = u * u
    angle = u + u * z * _horner(z, _ATAN_P) / _horner(z, _ATAN_Q)
    angle = jnp.where(reduced, jnp.pi / 4 + angle, angle)
    angle = jnp.where(ay > ax, jnp.pi / 2 - angle, angle)
    angle = jnp.where(x < 0, jnp.pi - angle, angle)
    return jnp.where(y < 0, -angle, angle)


def arccos(c):
    """arccos(c) (rad, in [0, π]) for c ∈ [−1, 1] via :func:`atan2` (vectorised)."""
    return atan2(jnp.sqrt(jnp.clip((1.0 - c) * (1.0 + c), 0.0, None)), c)


# Cephes sin/cos kernels on |r| ≤ π/4
_SIN = (1.58962301576546568060e-10, -2.50507477628578072866e-8, 2.75573136213857245213e-6,
        -1.98412698295895385996e-4, 8.33333333332211858878e-3, -1.66666666666666307295e-1)
_COS = (-1.13585365213876817300e-11, 2.08757008419747316778e-9, -2.75573141792967388112e-7,
        2.48015872888517045348e-5, -1.38888888888730564116e-3, 4.16666666666665929218e-2)


def cos_sin_of_turn(u):
    """(cos 2πu, sin 2πu) for a fraction of a full turn ``u`` (any real).

    The azimuth of a generated particle is φ = 2πu with u uniform; reducing u to
    the nearest quarter turn is exact in floating point, and the Cephes
    polynomials on |r| ≤ π/4 give both values to ~1 ulp with arithmetic XLA
    vectorises (``jnp.sin``/``jnp.cos`` are scalar libm calls on CPU).
    """
    quarter = jnp.round(4.0 * u)
    r = (2.0 * jnp.pi) * (u - 0.25 * quarter)
    z = r * r
    s = r + r * z * _horner(z, _SIN)
    c = 1.0 - 0.5 * z + z * z * _horner(z, _COS)
    q = jnp.mod(quarter, 4.0)
    cos = jnp.where(q == 0, c, jnp.where(q == 1, -s, jnp.where(q == 2, -c, s)))
    sin = jnp.where(q == 0, s, jnp.where(q == 1, c, jnp.where(q == 2, -s, -c)))
    return cos, sin


def cos_sin(angle):
    """(cos, sin) of ``angle`` (rad) via :func:`cos_sin_of_turn` (vectorised; the
    reduction angle/2π costs a relative 1e-16 of the angle)."""
    return cos_sin_of_turn(angle * (0.5 / jnp.pi))


def polar_angle(p):
    """Polar angle θ of the 3-momentum w.r.t. +z (rad, in [0, π])."""
    return atan2(transverse_momentum(p), p[..., 3])


def azimuth(p):
    """Azimuthal angle φ (rad, in (−π, π])."""
    return atan2(p[..., 2], p[..., 1])


def opening_angle(a, b):
    """Angle between the 3-momenta of ``a`` and ``b`` (rad), computed with
    atan2(|a×b|, a·b) so it stays accurate near 0 and π."""
    va, vb = a[..., 1:], b[..., 1:]
    cross = jnp.linalg.norm(jnp.cross(va, vb), axis=-1)
    return atan2(cross, jnp.sum(va * vb, axis=-1))


def cos_opening_angle(a, b):
    """cos of the angle between the 3-momenta of ``a`` and ``b`` (1 if either is zero);
    cheaper than :func:`opening_angle` for cone tests."""
    va, vb = a[..., 1:], b[..., 1:]
    norm = jnp.sqrt(jnp.sum(va * va, axis=-1) * jnp.sum(vb * vb, axis=-1))
    return jnp.where(norm > 0, jnp.sum(va * vb, axis=-1) / jnp.where(norm > 0, norm, 1.0), 1.0)


def on_shell(momentum, mass):
    """Four-momentum (…,4) for a 3-momentum (…,3) and mass (GeV)."""
    energy = jnp.sqrt(jnp.sum(momentum**2, axis=-1) + mass**2)
    return jnp.concatenate([energy[..., None], momentum], axis=-1)


def from_polar(magnitude, cos_theta, phi, mass):
    """On-shell four-momentum from |p⃗| (GeV), cos θ, φ (rad) and mass (GeV)."""
    return from_polar_cos_sin(magnitude, cos_theta, jnp.cos(phi), jnp.sin(phi), mass)


def from_polar_cos_sin(magnitude, cos_theta, cos_phi, sin_phi, mass):
    """:func:`from_polar` with the azimuth given as (cos φ, sin φ) (e.g. from
    :func:`cos_sin_of_turn`): no trigonometric call."""
    sin_theta = jnp.sqrt(jnp.clip(1.0 - cos_theta**2, 0.0, 1.0))
    momentum = magnitude[..., None] * jnp.stack([sin_theta * cos_phi, sin_theta * sin_phi, cos_theta], axis=-1)
    return on_shell(momentum, mass)


def two_body_momentum(parent_mass, mass_a, mass_b):
    """Momentum (GeV) of either daughter in the rest frame of a two-body decay.

    |p*| = √λ(M², m_a², m_b²) / (2M), with λ factored as (M² − (m_a + m_b)²)(M² −
    (m_a − m_b)²): exactly zero at threshold, zero (not NaN) below it.
    """
    m2 = parent_mass**2
    lam = (m2 - (mass_a + mass_b) ** 2) * (m2 - (mass_a - mass_b) ** 2)
    return jnp.sqrt(jnp.clip(lam, 0.0, None)) / (2.0 * parent_mass)


def rotate_to_direction(p, direction):
    """Rotate 3-momenta given w.r.t. +z so that +z maps onto ``direction`` (…,3).

    Used to emit a photon at a small angle around a muon or a beam.
    """
    # cos/sin of the direction's θ and φ straight from its components (no trig calls)
    transverse = jnp.sqrt(direction[..., 0] ** 2 + direction[..., 1] ** 2)
    norm = jnp.sqrt(transverse**2 + direction[..., 2] ** 2)
    ct, st = direction[..., 2] / norm, transverse / norm
    along_z = transverse > 0
    safe = jnp.where(along_z, transverse, 1.0)
    cp, sp = jnp.where(along_z, direction[..., 0] / safe, 1.0), jnp.where(along_z, direction[..., 1] / safe, 0.0)
    x, y, z = p[..., 1], p[..., 2], p[..., 3]
    # R_z(φ) R_y(θ) applied to (x, y, z)
    x1 = ct * x + st * z
    z1 = -st * x + ct * z
    x2 = cp * x1 - sp * y
    y2 = sp * x1 + cp * y
    return jnp.stack([p[..., 0], x2, y2, z1], axis=-1)
