"""The binned statistical model (HistFactory semantics, pyhf-compatible)."""

from diffana.model.interpolation import (
    histosys_code0,
    histosys_code4p,
    normsys_code1,
    normsys_code4,
)
from diffana.model.model import InvalidModel, Model, ModelConfig, ParameterSet

__all__ = [
    "InvalidModel",
    "Model",
    "ModelConfig",
    "ParameterSet",
    "histosys_code0",
    "histosys_code4p",
    "normsys_code1",
    "normsys_code4",
]
