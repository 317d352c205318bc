"""The names the Z'→invisible analysis agrees on: features, resolution models, selections.

They live here, apart from the modules that give them meaning (``samples.py``,
``selections.py``), because :mod:`config` validates a user's file against them:
``config → names`` keeps the import graph one-way (``samples`` and ``selections``
import ``config``). This module imports nothing of the analysis.
"""

from __future__ import annotations

from diffana.physics import features as _features

PUNZI_FEATURES = (
    "muon_pt_wrt_thrust_cm",
    "hard_muon_pt_wrt_soft_cm",
    "hard_muon_pl_wrt_soft_cm",
    "dimuon_pt_cm",
)
"""The four CM features of the Punzi-net selection (GeV)."""

TAU_PLANE_FEATURES = ("recoil_pt_wrt_muon1_cm", "recoil_pt_wrt_muon2_cm")
"""The 2018 τ-suppression plane: recoil pT w.r.t. each muon (GeV, CM)."""

FIT_FEATURES = ("recoil_mass_squared", "recoil_theta_cm")
"""The fitted variables: M²_rec (GeV²) × θ_rec^CM (deg)."""

ANALYSIS_FEATURES = FIT_FEATURES + PUNZI_FEATURES + TAU_PLANE_FEATURES
REQUIRED_FEATURES = tuple(dict.fromkeys(ANALYSIS_FEATURES + _features._PRESELECTION_INPUTS + ("weight",)))
"""Columns a ROOT background file must provide (after the branch map)."""

RESOLUTION_MODELS = ("published", "table")
"""The σ(M²_rec) curves of ``samples.recoil_mass_squared_resolution``. ``published``:
the curve reproducing the published 582-hypothesis scan
(``samples.PUBLISHED_RESOLUTION_SIGMAS``); ``table``: the PHYSICS.md simulation table
(``samples.RESOLUTION_SIGMAS``, 436 hypotheses from 0.01 to 8.5 GeV)."""

HYPOTHESIS_SPACINGS = ("scan", "mass")
"""How the training hypotheses are spread over the scan (config
``training.hypothesis_spacing``, ``cuts.spread_hypotheses``): evenly in scan index or
in mass."""

SELECTION_NAMES = ("cut_based", "mlp_bce", "punzi_net", "end_to_end")
SELECTION_LABELS = {
    "cut_based": "(a) cut-based (2018 τ plane)",
    "mlp_bce": "(b) MLP, BCE",
    "punzi_net": "(c) Punzi-net",
    "end_to_end": "(d) end to end (expected limit)",
}
"""The four selections of ``selections.py``, by name, and their labels in tables and figures."""
