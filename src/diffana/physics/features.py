"""Reconstructed per-event features of the Z'→invisible analysis and its preselection.

:func:`reconstruct_features` maps detector-level objects to a flat dict of 1-D
arrays named in :data:`FEATURE_UNITS`. Recoil quantities are computed against the
two muons with the *nominal* beams (the analysis does not know each event's beam
energies). Angles are in degrees, momenta in GeV, masses squared in GeV².
``muon1`` is the muon with the higher CM energy, ``muon2`` the other.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from diffana.physics import _beam
from diffana.physics import kinematics as kin

FEATURE_UNITS = {
    "recoil_mass_squared": "GeV²: M²_rec = s + M²_μμ − 2√s E*_μμ (CM, nominal beams)",
    "recoil_theta_lab": "deg: polar angle of the recoil momentum in the lab",
    "recoil_theta_cm": "deg: polar angle of the recoil momentum in the CM",
    "recoil_pt_cm": "GeV: transverse recoil momentum in the CM",
    "recoil_momentum_cm": "GeV: |p⃗_rec| in the CM",
    "recoil_pt_wrt_muon1_cm": "GeV: recoil momentum transverse to muon1 (CM; 2018 τ-suppression plane)",
    "recoil_pt_wrt_muon2_cm": "GeV: recoil momentum transverse to muon2 (CM)",
    "muon_pt_wrt_thrust_cm": "GeV: pT of a muon w.r.t. the dimuon thrust axis (CM; Punzi-net input)",
    "hard_muon_pt_wrt_soft_cm": "GeV: pT of muon1 w.r.t. muon2's direction (CM; Punzi-net input)",
    "hard_muon_pl_wrt_soft_cm": "GeV: longitudinal momentum of muon1 along muon2's direction (CM; Punzi-net input)",
    "dimuon_pt_cm": "GeV: transverse momentum of the dimuon system (CM; Punzi-net input)",
    "dimuon_mass": "GeV: invariant mass of the two muons",
    "muon_opening_angle_cm": "deg: opening angle between the muons in the CM",
    "muon_delta_phi_lab": "deg: azimuthal opening angle between the muons in the lab, in [0, 180]",
    "muon1_theta_lab": "deg: polar angle of muon1 in the lab",
    "muon2_theta_lab": "deg: polar angle of muon2 in the lab",
    "muon1_pt_lab": "GeV: transverse momentum of muon1 in the lab",
    "muon2_pt_lab": "GeV: transverse momentum of muon2 in the lab",
    "muon1_p_lab": "GeV: momentum of muon1 in the lab",
    "muon2_p_lab": "GeV: momentum of muon2 in the lab",
    "muon1_energy_cm": "GeV: energy of muon1 in the CM",
    "muon2_energy_cm": "GeV: energy of muon2 in the CM",
    "muon1_charge": "e: charge of muon1 (±1)",
    "muon2_charge": "e: charge of muon2 (±1)",
    "n_tracks": "count: charged tracks in the CDC acceptance",
    "n_muons_identified": "count: tracks in acceptance identified as muons (of the two candidates)",
    "n_photons": "count: detected photons (ECL clusters > 0.1 GeV not matched to a track)",
    "photon_energy_total": "GeV: summed lab energy of the detected photons",
    "photon_recoil_min_angle": "deg: lab angle between the recoil and the nearest detected photon (180 if none)",
    "weight": "events: expected events per the requested luminosity",
    "process": "label: integer process code (see PROCESS_LABELS)",
}
"""Every feature name with its unit and meaning (documented in docs/physics.md)."""


def _nominal_frame():
    electron, positron = kin.beam_four_momenta(_beam.ELECTRON_BEAM_ENERGY, _beam.POSITRON_BEAM_ENERGY)
    beta, angle = kin.cm_frame(electron, positron)
    sqrt_s = float(np.sqrt(kin.invariant_mass_squared(electron + positron)))
    return np.asarray(beta), float(angle), sqrt_s


NOMINAL_CM_BETA, NOMINAL_CM_ANGLE, NOMINAL_SQRT_S = _nominal_frame()
"""Nominal lab→CM boost velocity, rotation angle (rad) and √s (GeV)."""


def _cross_norm(a, b):
    return jnp.linalg.norm(jnp.cross(a, b), axis=-1)


def _unit(v):
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def reconstruct_features(reco):
    """Feature dict (see :data:`FEATURE_UNITS`, less ``weight``/``process``) from
    :func:`~diffana.physics.detector.simulate_detector` output."""
    tracks_lab = reco["tracks"]
    beta = jnp.asarray(NOMINAL_CM_BETA)
    tracks_cm = kin.lab_to_cm(tracks_lab, beta, NOMINAL_CM_ANGLE)
    charge = reco["track_charge"]

    first_harder = tracks_cm[:, 0, 0] >= tracks_cm[:, 1, 0]
    order = lambda x: jnp.where(first_harder[:, None], x, x[:, ::-1])  # noqa: E731
    mu_lab = jnp.stack([order(tracks_lab[..., i]) for i in range(4)], axis=-1)
    mu_cm = jnp.stack([order(tracks_cm[..., i]) for i in range(4)], axis=-1)
    mu_charge = order(charge)

    dimuon_cm = mu_cm.sum(axis=1)
    initial_cm = jnp.array([NOMINAL_SQRT_S, 0.0, 0.0, 0.0])
    recoil_cm = initial_cm - dimuon_cm
    recoil_lab = kin.cm_to_lab(recoil_cm, beta, NOMINAL_CM_ANGLE)

    p1, p2 = mu_cm[:, 0, 1:], mu_cm[:, 1, 1:]
    diff, total = p1 - p2, p1 + p2
    thrust_axis = jnp.where(
        (jnp.linalg.norm(diff, axis=-1) >= jnp.linalg.norm(total, axis=-1))[:, None], diff, total
    )
    soft_dir = _unit(p2)
    rec3 = recoil_cm[:, 1:]

    photons = reco["photons"]
    detected = reco["photon_detected"]
    # nearest photon = largest cosine; one arccos per event
    photon_cos = jnp.where(detected, kin.cos_opening_angle(photons, recoil_lab[:, None, :]), -1.0)
    min_angle = jnp.degrees(kin.arccos(jnp.clip(jnp.max(photon_cos, axis=-1, initial=-1.0), -1.0, 1.0)))

    dphi = jnp.abs(kin.azimuth(mu_lab[:, 0]) - kin.azimuth(mu_lab[:, 1]))
    dphi = jnp.where(dphi > jnp.pi, 2.0 * jnp.pi - dphi, dphi)
    in_acc = reco["track_in_acceptance"]

    return {
        "recoil_mass_squared": kin.invariant_mass_squared(recoil_cm),
        "recoil_theta_lab": jnp.degrees(kin.polar_angle(recoil_lab)),
        "recoil_theta_cm": jnp.degrees(kin.polar_angle(recoil_cm)),
        "recoil_pt_cm": kin.transverse_momentum(recoil_cm),
        "recoil_momentum_cm": kin.momentum_magnitude(recoil_cm),
        "recoil_pt_wrt_muon1_cm": _cross_norm(rec3, _unit(p1)),
        "recoil_pt_wrt_muon2_cm": _cross_norm(rec3, soft_dir),
        "muon_pt_wrt_thrust_cm": _cross_norm(p1, _unit(thrust_axis)),
        "hard_muon_pt_wrt_soft_cm": _cross_norm(p1, soft_dir),
        "hard_muon_pl_wrt_soft_cm": jnp.sum(p1 * soft_dir, axis=-1),
        "dimuon_pt_cm": kin.transverse_momentum(dimuon_cm),
        "dimuon_mass": jnp.sqrt(jnp.clip(kin.invariant_mass_squared(dimuon_cm), 0.0, None)),
        "muon_opening_angle_cm": jnp.degrees(kin.opening_angle(mu_cm[:, 0], mu_cm[:, 1])),
        "muon_delta_phi_lab": jnp.degrees(dphi),
        "muon1_theta_lab": jnp.degrees(kin.polar_angle(mu_lab[:, 0])),
        "muon2_theta_lab": jnp.degrees(kin.polar_angle(mu_lab[:, 1])),
        "muon1_pt_lab": kin.transverse_momentum(mu_lab[:, 0]),
        "muon2_pt_lab": kin.transverse_momentum(mu_lab[:, 1]),
        "muon1_p_lab": kin.momentum_magnitude(mu_lab[:, 0]),
        "muon2_p_lab": kin.momentum_magnitude(mu_lab[:, 1]),
        "muon1_energy_cm": mu_cm[:, 0, 0],
        "muon2_energy_cm": mu_cm[:, 1, 0],
        "muon1_charge": mu_charge[:, 0],
        "muon2_charge": mu_charge[:, 1],
        "n_tracks": (jnp.sum(in_acc, axis=-1) + reco["n_extra_tracks"]).astype(jnp.int32),
        "n_muons_identified": jnp.sum(in_acc & reco["muon_identified"], axis=-1).astype(jnp.int32),
        "n_photons": jnp.sum(detected, axis=-1).astype(jnp.int32),
        "photon_energy_total": jnp.sum(jnp.where(detected, photons[..., 0], 0.0), axis=-1),
        "photon_recoil_min_angle": min_angle,
    }


def preselection(features, min_muon_delta_phi=90.0):
    """Boolean mask of events passing the Z'→invisible preselection (PHYSICS.md).

    Exactly two tracks, both identified muons of opposite charge with lab
    pT > 0.4 GeV and θ ∈ [37°, 120°] (two-track trigger) and azimuthal opening
    > ``min_muon_delta_phi`` (deg; 90 for 2019 data, 30 for 2020); CM opening
    angle < 179°; M²_rec < 4 GeV²: θ_rec (lab) ∈ [34°, 123°] and not in
    [89°, 91°]; M²_rec ≥ 4 GeV²: θ_rec < 123°; photon veto: total photon energy
    < 0.5 GeV and no photon within 15° of the recoil; CM recoil pT > 0.5 GeV.
    Works on numpy or JAX arrays (any dict with the :data:`FEATURE_UNITS` names).
    """
    missing = [name for name in _PRESELECTION_INPUTS if name not in features]
    if missing:
        raise KeyError(f"preselection needs feature(s) {missing}; available: {sorted(features)}")
    f = features
    xp = jnp if any(isinstance(f[k], jnp.ndarray) for k in _PRESELECTION_INPUTS) else np
    m2 = f["recoil_mass_squared"]
    theta_rec = f["recoil_theta_lab"]
    low_mass_region = (theta_rec >= 34.0) & (theta_rec <= 123.0) & ~((theta_rec >= 89.0) & (theta_rec <= 91.0))
    recoil_ok = xp.where(m2 < 4.0, low_mass_region, theta_rec < 123.0)
    return (
        (f["n_tracks"] == 2)
        & (f["n_muons_identified"] == 2)
        & (f["muon1_charge"] * f["muon2_charge"] < 0)
        & (f["muon1_pt_lab"] > 0.4)
        & (f["muon2_pt_lab"] > 0.4)
        & (f["muon1_theta_lab"] >= 37.0)
        & (f["muon1_theta_lab"] <= 120.0)
        & (f["muon2_theta_lab"] >= 37.0)
        & (f["muon2_theta_lab"] <= 120.0)
        & (f["muon_delta_phi_lab"] > min_muon_delta_phi)
        & (f["muon_opening_angle_cm"] < 179.0)
        & recoil_ok
        & (f["photon_energy_total"] < 0.5)
        & (f["photon_recoil_min_angle"] > 15.0)
        & (f["recoil_pt_cm"] > 0.5)
    )


_PRESELECTION_INPUTS = (
    "recoil_mass_squared",
    "recoil_theta_lab",
    "n_tracks",
    "n_muons_identified",
    "muon1_charge",
    "muon2_charge",
    "muon1_pt_lab",
    "muon2_pt_lab",
    "muon1_theta_lab",
    "muon2_theta_lab",
    "muon_delta_phi_lab",
    "muon_opening_angle_cm",
    "photon_energy_total",
    "photon_recoil_min_angle",
    "recoil_pt_cm",
)


def gaussian_core_width(values):
    """Centre and width of a peak's Gaussian core, in the units of ``values``.

    Iterated 2σ-clipped mean and standard deviation; the standard deviation of a
    unit Gaussian clipped at ±2σ is 0.8796, which the width is corrected by. Used
    to compare the signal M²_rec peak width (GeV²) with the PHYSICS.md table.
    """
    values = np.asarray(values, dtype=float)
    centre, sigma = np.median(values), np.std(values)
    for _ in range(30):
        inside = np.abs(values - centre) < 2.0 * sigma
        centre, sigma = values[inside].mean(), values[inside].std() / 0.8796
    return centre, sigma
