"""The Belle II Z'→invisible search (Lμ−Lτ), end to end: ``diffana zprime-invisible``.

Modules: :mod:`.config` (TOML), :mod:`.samples` (events, hypotheses, pseudo-data),
:mod:`.templates` (2D window templates), :mod:`.fit` (model + vmapped limits),
:mod:`.selections` (the four selections), :mod:`.outputs` (tables), :mod:`.plots`,
:mod:`.pipeline` (:func:`run_analysis`). See docs/tutorial_zprime_invisible.md.
"""

from diffana.analyses.zprime_invisible.config import Config, ConfigError, load_config
from diffana.analyses.zprime_invisible.pipeline import AnalysisResult, run_analysis

__all__ = ["AnalysisResult", "Config", "ConfigError", "load_config", "run_analysis"]
