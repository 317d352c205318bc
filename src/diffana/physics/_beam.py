"""Collider and particle constants used by the generator (GeV, rad, nb).

Shared values come from :mod:`diffana.physics.constants` (one source of truth);
only what that module does not define (τ→πν branching, background cross
sections from PHYSICS.md) lives here.
"""

from diffana.physics import constants as _c

ELECTRON_BEAM_ENERGY = _c.ELECTRON_BEAM_ENERGY  # GeV
POSITRON_BEAM_ENERGY = _c.POSITRON_BEAM_ENERGY  # GeV
HALF_CROSSING_ANGLE = _c.BEAM_CROSSING_HALF_ANGLE  # rad, each beam w.r.t. the solenoid axis
ELECTRON_BEAM_ENERGY_SPREAD = _c.ELECTRON_BEAM_ENERGY_SPREAD  # GeV
POSITRON_BEAM_ENERGY_SPREAD = _c.POSITRON_BEAM_ENERGY_SPREAD  # GeV

ELECTRON_MASS = _c.ELECTRON_MASS  # GeV
MUON_MASS = _c.MUON_MASS  # GeV
TAU_MASS = _c.TAU_MASS  # GeV
CHARGED_PION_MASS = _c.PION_MASS  # GeV
FINE_STRUCTURE_CONSTANT = _c.FINE_STRUCTURE_CONSTANT

BRANCHING_TAU_TO_MU_NU_NU = _c.TAU_TO_MUON_BRANCHING_FRACTION
BRANCHING_TAU_TO_PI_NU = 0.1082  # PDG 2024, B(τ⁻ → π⁻ν_τ)

CROSS_SECTION_MUMU_NB = 1.148  # e+e- -> mu+mu-(gamma), PHYSICS.md
CROSS_SECTION_TAUTAU_NB = 0.919  # e+e- -> tau+tau-(gamma), PHYSICS.md
CROSS_SECTION_EEMUMU_NB = 18.9  # e+e- -> e+e-mu+mu-, generator-level cuts, PHYSICS.md
