"""Statistical models: the binned HistFactory model (pyhf-compatible), the on/off
counting model and the parametric bump-hunt model (a shape on a free polynomial
background in a fit window)."""

from diffana.model.counting import CountingConfig, CountingModel, LogNormalNuisance
from diffana.model.interpolation import (
    histosys_code0,
    histosys_code4p,
    normsys_code1,
    normsys_code4,
)
from diffana.model.model import InvalidModel, Model, ModelConfig, ParameterSet
from diffana.model.parametric import ParametricConfig, ParametricModel, Windows, sliding_windows
from diffana.model.patchset import (
    GroupMember,
    NamedPatch,
    PatchedWorkspaces,
    PatchError,
    WorkspaceGroup,
    apply_patch,
    load_patchset,
    read_patches,
    select_patches,
    stack_workspaces,
)
from diffana.model.workspace import Workspace, WorkspaceError, load_workspace, to_workspace

__all__ = [
    "CountingConfig",
    "CountingModel",
    "GroupMember",
    "InvalidModel",
    "LogNormalNuisance",
    "Model",
    "ModelConfig",
    "NamedPatch",
    "ParameterSet",
    "ParametricConfig",
    "ParametricModel",
    "PatchError",
    "PatchedWorkspaces",
    "Workspace",
    "WorkspaceError",
    "Windows",
    "WorkspaceGroup",
    "apply_patch",
    "histosys_code0",
    "histosys_code4p",
    "load_patchset",
    "load_workspace",
    "normsys_code1",
    "normsys_code4",
    "read_patches",
    "select_patches",
    "sliding_windows",
    "stack_workspaces",
    "to_workspace",
]
