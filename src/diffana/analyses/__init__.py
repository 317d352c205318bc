"""Complete analyses built from diffana's pieces (each one a sub-package).

- :mod:`diffana.analyses.zprime_invisible`: the Belle II Z'→invisible search
  (``diffana zprime-invisible``).
"""
