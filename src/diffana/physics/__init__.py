"""Belle II physics for diffana: Lμ−Lτ theory, kinematics and the event generator.

Keep this file a flat list of imports, one per line, grouped by section.
"""

# kinematics
from diffana.physics.kinematics import boost
from diffana.physics.kinematics import invariant_mass_squared
from diffana.physics.kinematics import minkowski_dot
from diffana.physics.kinematics import two_body_momentum

# theory
from diffana.physics import constants
from diffana.physics.phase_space import random_rotation_matrices
from diffana.physics.phase_space import sample_three_body_dalitz
from diffana.physics.phase_space import sample_three_body_recoil
from diffana.physics.theory import beam_four_momenta_cm
from diffana.physics.theory import branching_fraction_invisible
from diffana.physics.theory import coupling_upper_limit
from diffana.physics.theory import g_minus_2_band
from diffana.physics.theory import muon_g_minus_2_contribution
from diffana.physics.theory import partial_width_leptons
from diffana.physics.theory import partial_width_muons
from diffana.physics.theory import partial_width_neutrinos
from diffana.physics.theory import partial_width_taus
from diffana.physics.theory import sample_signal_cm
from diffana.physics.theory import squared_matrix_element
from diffana.physics.theory import total_width
from diffana.physics.theory import zprime_cross_section
from diffana.physics.theory import zprime_cross_section_mc
from diffana.physics.theory import zprime_cross_section_table

# generator
from diffana.physics.bias import BackgroundBias
from diffana.physics.detector import DetectorModel
from diffana.physics.detector import simulate_detector
from diffana.physics.features import FEATURE_UNITS
from diffana.physics.features import preselection
from diffana.physics.features import reconstruct_features
from diffana.physics.generator import BACKGROUND_PROCESSES
from diffana.physics.generator import PROCESS_LABELS
from diffana.physics.generator import PROCESS_NAMES
from diffana.physics.generator import cross_section
from diffana.physics.generator import expected_events
from diffana.physics.generator import generate
from diffana.physics.generator import simulate
from diffana.physics.features import gaussian_core_width
