"""ROOT I/O with uproot: write samples as TTrees, read them (and users' ntuples) back.

A *sample* is a dict of equal-length 1-D numpy arrays: features (see
``diffana.physics.FEATURE_UNITS``), ``weight`` (expected events) and ``process``
(integer label). :func:`write_sample` stores it as one TTree; :func:`read_sample`
reads it back exactly (same dtypes, same values). Users' ntuples with other branch
names are read through a *branch map* ``{branch_name: diffana_name}`` or
``{branch_name: (diffana_name, scale)}`` — :data:`BELLE2_BRANCH_MAP` maps
basf2-style names (radians → degrees included). :func:`iterate_sample` reads files
larger than memory in chunks (``uproot.iterate`` with ``step_size``).

NaN policy: ``nan_policy="raise"`` (default) names the branch and the count of
NaN values; ``"drop"`` removes every event with a NaN in any read branch and
reports the count through the returned :class:`ReadReport` (``read_sample(...,
report=True)``) and a ``UserWarning``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Iterator, Mapping

import numpy as np

from diffana.errors import SampleIOError

DEFAULT_TREE = "events"

_DEGREES = 180.0 / math.pi
BELLE2_BRANCH_MAP: dict[str, str | tuple[str, float]] = {
    "m2Recoil": "recoil_mass_squared",
    "recoilMassSquared": "recoil_mass_squared",
    "pRecoilTheta": ("recoil_theta_lab", _DEGREES),
    "useCMSFrame__bopRecoilTheta__bc": ("recoil_theta_cm", _DEGREES),
    "pRecoilThetaCMS": ("recoil_theta_cm", _DEGREES),
    "useCMSFrame__bopRecoilPt__bc": "recoil_pt_cm",
    "pRecoilPtCMS": "recoil_pt_cm",
    "useCMSFrame__bopRecoil__bc": "recoil_momentum_cm",
    "mu_p_pt": "muon1_pt_lab",
    "mu_m_pt": "muon2_pt_lab",
    "mu_p_p": "muon1_p_lab",
    "mu_m_p": "muon2_p_lab",
    "mu_p_theta": ("muon1_theta_lab", _DEGREES),
    "mu_m_theta": ("muon2_theta_lab", _DEGREES),
    "mu_p_charge": "muon1_charge",
    "mu_m_charge": "muon2_charge",
    "mu_p_E_CMS": "muon1_energy_cm",
    "mu_m_E_CMS": "muon2_energy_cm",
    "InvM": "dimuon_mass",
    "useCMSFrame__bopt__bc": "dimuon_pt_cm",
    "muonPtThrustCMS": "muon_pt_wrt_thrust_cm",
    "ptHardWrtSoftCMS": "hard_muon_pt_wrt_soft_cm",
    "plHardWrtSoftCMS": "hard_muon_pl_wrt_soft_cm",
    "openingAngleCMS": ("muon_opening_angle_cm", _DEGREES),
    "deltaPhiLab": ("muon_delta_phi_lab", _DEGREES),
    "nTracks": "n_tracks",
    "nMuonsID": "n_muons_identified",
    "nPhotons": "n_photons",
    "totalPhotonEnergy": "photon_energy_total",
    "minPhotonRecoilAngle": ("photon_recoil_min_angle", _DEGREES),
    "__weight__": "weight",
    "weight": "weight",
    "process": "process",
}
"""Default map from basf2-style ntuple branches to diffana names. Entries are
``name`` or ``(name, scale)``: the branch is multiplied by ``scale`` (basf2 angles
are radians, diffana's degrees). Daughter 0 (``mu_p``) becomes ``muon1``, daughter
1 (``mu_m``) ``muon2``: diffana's ordering by CM energy is not implied."""


@dataclasses.dataclass
class ReadReport:
    """What :func:`read_sample` did: events read, events dropped for NaN per branch."""

    n_read: int
    n_dropped: int
    nan_counts: dict[str, int]


def _check_sample(sample: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not sample:
        raise SampleIOError("empty sample: nothing to write")
    arrays = {}
    length = None
    for name, value in sample.items():
        array = np.asarray(value)
        if array.ndim != 1:
            raise SampleIOError(f"branch {name!r}: expected a 1-D array, got shape {array.shape}")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise SampleIOError(f"branch {name!r}: dtype {array.dtype} is not numeric")
        if length is None:
            length = array.size
        elif array.size != length:
            raise SampleIOError(f"branch {name!r} has {array.size} entries, others have {length}")
        arrays[name] = array
    return arrays


def write_sample(path: str | os.PathLike, sample: Mapping[str, np.ndarray], tree: str = DEFAULT_TREE,
                 *, append_trees: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> None:
    """Write ``sample`` (dict of 1-D numeric arrays) to ``path`` as TTree ``tree``.

    ``append_trees`` writes further samples as additional trees in the same file
    (e.g. one tree per process). Existing files are overwritten.
    """
    import uproot

    trees = {tree: _check_sample(sample)}
    for name, other in (append_trees or {}).items():
        trees[name] = _check_sample(other)
    with uproot.recreate(os.fspath(path)) as file:
        for name, arrays in trees.items():
            # mktree: a classic TTree (plain assignment may write an RNTuple)
            ttree = file.mktree(name, {b: a.dtype for b, a in arrays.items()})
            ttree.extend(arrays)


def _normalise_map(branch_map):
    out = {}
    for branch, target in (branch_map or {}).items():
        if isinstance(target, tuple):
            name, scale = target
            out[branch] = (str(name), float(scale))
        else:
            out[branch] = (str(target), 1.0)
    return out


def _open_tree(path, tree):
    import uproot

    path = os.fspath(path)
    if not os.path.exists(path):
        raise SampleIOError(f"file not found: {path}")
    try:
        file = uproot.open(path)
    except Exception as error:  # uproot raises several types for non-ROOT files
        raise SampleIOError(f"{path}: not a readable ROOT file ({error})") from error
    if tree not in file:
        trees = [k.split(";")[0] for k, c in file.classnames().items() if c.startswith("TTree")]
        raise SampleIOError(f"{path}: no tree {tree!r}; trees in the file: {sorted(set(trees))}")
    return file[tree]


def _plan(ttree, path, tree, branches, branch_map, strict_map):
    """Which branches to read and how to rename/scale them."""
    available = list(ttree.keys())
    mapping = _normalise_map(branch_map)
    if branches is None:
        # everything: mapped branches get their diffana names, others keep theirs
        chosen = [b for b in available if b in mapping or not strict_map]
        if not chosen:
            raise SampleIOError(
                f"{path}:{tree}: none of the mapped branches {sorted(mapping)} exist; available: {available}"
            )
        plan = {b: mapping.get(b, (b, 1.0)) for b in chosen}
    else:
        inverse = {}
        for b, (name, scale) in mapping.items():
            if b in available:
                inverse.setdefault(name, (b, scale))
        plan = {}
        for name in branches:
            if name in inverse:
                b, scale = inverse[name]
            elif name in available:
                b, scale = name, 1.0
            else:
                sources = [b for b, (n, _) in mapping.items() if n == name]
                hint = f" (looked for {sources + [name]})" if sources else ""
                raise SampleIOError(
                    f"{path}:{tree}: missing branch for {name!r}{hint}; available branches: {available}"
                )
            plan[b] = (name, scale)
    for b in plan:
        interpretation = ttree[b].interpretation
        dtype = getattr(interpretation, "to_dtype", None) or getattr(interpretation, "numpy_dtype", None)
        if dtype is None or not (np.issubdtype(np.dtype(dtype), np.number) or np.dtype(dtype) == bool):
            raise SampleIOError(
                f"{path}:{tree}: branch {b!r} is not a flat numeric branch ({ttree[b].typename})"
            )
    return plan


def _convert(arrays, plan, path, tree, nan_policy):
    out = {}
    for b, (name, scale) in plan.items():
        value = np.asarray(arrays[b])
        if value.ndim != 1:
            raise SampleIOError(f"{path}:{tree}: branch {b!r} is not one number per event")
        out[name] = value * scale if scale != 1.0 else value
    nan_counts = {}
    bad = None
    for name, value in out.items():
        if np.issubdtype(value.dtype, np.floating):
            mask = np.isnan(value)
            count = int(mask.sum())
            if count:
                nan_counts[name] = count
                bad = mask if bad is None else bad | mask
    n_dropped = 0
    if nan_counts:
        if nan_policy == "raise":
            detail = ", ".join(f"{k}: {v}" for k, v in nan_counts.items())
            raise SampleIOError(
                f"{path}:{tree}: NaN values in branch(es) {detail}; pass nan_policy='drop' to skip those events"
            )
        keep = ~bad
        n_dropped = int(bad.sum())
        out = {k: v[keep] for k, v in out.items()}
    return out, nan_counts, n_dropped


def _check_policy(nan_policy):
    if nan_policy not in ("raise", "drop"):
        raise ValueError(f"nan_policy must be 'raise' or 'drop', got {nan_policy!r}")


def read_sample(
    path: str | os.PathLike,
    tree: str = DEFAULT_TREE,
    *,
    branches: list[str] | None = None,
    branch_map: Mapping[str, str | tuple[str, float]] | None = None,
    nan_policy: str = "raise",
    report: bool = False,
):
    """Read TTree ``tree`` of ``path`` into a dict of 1-D numpy arrays.

    ``branches``: diffana names to read (default: all branches). ``branch_map``:
    ``{branch: name}`` or ``{branch: (name, scale)}`` renaming (e.g.
    :data:`BELLE2_BRANCH_MAP`); with ``branches=None`` and a map, only mapped
    branches are read. ``nan_policy``: ``"raise"`` or ``"drop"`` (module docs).
    With ``report=True`` returns ``(sample, ReadReport)``.
    """
    _check_policy(nan_policy)
    ttree = _open_tree(path, tree)
    plan = _plan(ttree, path, tree, branches, branch_map, strict_map=branch_map is not None)
    arrays = ttree.arrays(list(plan), library="np")
    sample, nan_counts, n_dropped = _convert(arrays, plan, path, tree, nan_policy)
    if n_dropped:
        warnings.warn(f"{path}:{tree}: dropped {n_dropped} event(s) with NaN values ({nan_counts})", stacklevel=2)
    if report:
        n_read = len(next(iter(arrays.values()))) if arrays else 0
        return sample, ReadReport(n_read=n_read, n_dropped=n_dropped, nan_counts=nan_counts)
    return sample


def count_entries(
    path: str | os.PathLike,
    tree: str = DEFAULT_TREE,
    *,
    branches: list[str] | None = None,
    branch_map: Mapping[str, str | tuple[str, float]] | None = None,
) -> int:
    """Number of events in TTree ``tree`` of ``path``, after checking that every
    requested branch exists (same arguments and errors as :func:`read_sample`).
    Reads metadata only: a cheap check of a whole list of files before a long run."""
    ttree = _open_tree(path, tree)
    _plan(ttree, path, tree, branches, branch_map, strict_map=branch_map is not None)
    return int(ttree.num_entries)


def iterate_sample(
    path: str | os.PathLike,
    tree: str = DEFAULT_TREE,
    *,
    branches: list[str] | None = None,
    branch_map: Mapping[str, str | tuple[str, float]] | None = None,
    step_size: int | str = "100 MB",
    nan_policy: str = "raise",
) -> Iterator[dict[str, np.ndarray]]:
    """Yield the sample in chunks of ``step_size`` (events, or a size such as
    ``"100 MB"``) via ``uproot.iterate``; same renaming and NaN policy as
    :func:`read_sample` (applied per chunk), so files larger than memory can be
    histogrammed chunk by chunk."""
    import uproot

    _check_policy(nan_policy)
    ttree = _open_tree(path, tree)
    plan = _plan(ttree, path, tree, branches, branch_map, strict_map=branch_map is not None)
    for arrays in uproot.iterate(f"{os.fspath(path)}:{tree}", list(plan), step_size=step_size, library="np"):
        sample, nan_counts, n_dropped = _convert(arrays, plan, path, tree, nan_policy)
        if n_dropped:
            warnings.warn(f"{path}:{tree}: dropped {n_dropped} event(s) with NaN values ({nan_counts})", stacklevel=2)
        yield sample


def concatenate_samples(samples: list[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join samples (e.g. one per process) with the same branch names into one."""
    if not samples:
        raise ValueError("no samples to concatenate")
    names = list(samples[0])
    for i, sample in enumerate(samples[1:], start=1):
        if set(sample) != set(names):
            raise ValueError(f"sample {i} has branches {sorted(sample)}, sample 0 has {sorted(names)}")
    return {name: np.concatenate([np.asarray(s[name]) for s in samples]) for name in names}
