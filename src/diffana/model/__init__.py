"""The binned statistical model (HistFactory semantics, pyhf-compatible)."""

from diffana.model.interpolation import (
    histosys_code0,
    histosys_code4p,
    normsys_code1,
    normsys_code4,
)
from diffana.model.model import InvalidModel, Model, ModelConfig, ParameterSet
from diffana.model.workspace import Workspace, WorkspaceError, load_workspace, to_workspace

__all__ = [
    "InvalidModel",
    "Model",
    "ModelConfig",
    "ParameterSet",
    "Workspace",
    "WorkspaceError",
    "histosys_code0",
    "histosys_code4p",
    "load_workspace",
    "normsys_code1",
    "normsys_code4",
    "to_workspace",
]
