"""Four-vector kinematics for the Belle II generator: boosts, frames, angles.

Four-momenta are arrays ``(..., 4)`` ordered ``(E, px, py, pz)`` in GeV. The lab
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
    """Minkowski product a·b = E_a E_b − p⃗_a·p⃗_b (GeV²)."""
    return a[..., 0] * b[..., 0] - jnp.sum(a[..., 1:] * b[..., 1:], axis=-1)


def invariant_mass_squared(p):
    """Invariant mass squared p² (GeV²)."""
    return minkowski_dot(p, p)


def boost(p, beta):
    """Boost four-momenta ``p`` (…,4) by velocity ``beta`` (…,3): a particle at
    rest ends up moving with ``beta``."""
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
    c, s = jnp.cos(angle), jnp.sin(angle)
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
    angle = jnp.arctan2(electron_cm[..., 1], electron_cm[..., 3])
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
    return jnp.hypot(p[..., 1], p[..., 2])


def polar_angle(p):
    """Polar angle θ of the 3-momentum w.r.t. +z (rad, in [0, π])."""
    return jnp.arctan2(transverse_momentum(p), p[..., 3])


def azimuth(p):
    """Azimuthal angle φ (rad, in (−π, π])."""
    return jnp.arctan2(p[..., 2], p[..., 1])


def opening_angle(a, b):
    """Angle between the 3-momenta of ``a`` and ``b`` (rad), computed with
    atan2(|a×b|, a·b) so it stays accurate near 0 and π."""
    va, vb = a[..., 1:], b[..., 1:]
    cross = jnp.linalg.norm(jnp.cross(va, vb), axis=-1)
    return jnp.arctan2(cross, jnp.sum(va * vb, axis=-1))


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
    sin_theta = jnp.sqrt(jnp.clip(1.0 - cos_theta**2, 0.0, 1.0))
    momentum = magnitude[..., None] * jnp.stack(
        [sin_theta * jnp.cos(phi), sin_theta * jnp.sin(phi), cos_theta], axis=-1
    )
    return on_shell(momentum, mass)


def two_body_momentum(parent_mass, mass_a, mass_b):
    """Momentum (GeV) of either daughter in a two-body decay at rest; 0 below threshold."""
    m2 = parent_mass**2
    lam = (m2 - (mass_a + mass_b) ** 2) * (m2 - (mass_a - mass_b) ** 2)
    return jnp.sqrt(jnp.clip(lam, 0.0, None)) / (2.0 * parent_mass)


def rotate_to_direction(p, direction):
    """Rotate 3-momenta given w.r.t. +z so that +z maps onto ``direction`` (…,3).

    Used to emit a photon at a small angle around a muon or a beam.
    """
    d = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    theta = jnp.arccos(jnp.clip(d[..., 2], -1.0, 1.0))
    phi = jnp.arctan2(d[..., 1], d[..., 0])
    ct, st, cp, sp = jnp.cos(theta), jnp.sin(theta), jnp.cos(phi), jnp.sin(phi)
    x, y, z = p[..., 1], p[..., 2], p[..., 3]
    # R_z(φ) R_y(θ) applied to (x, y, z)
    x1 = ct * x + st * z
    z1 = -st * x + ct * z
    x2 = cp * x1 - sp * y
    y2 = sp * x1 + cp * y
    return jnp.stack([p[..., 0], x2, y2, z1], axis=-1)
