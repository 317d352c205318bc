"""Several devices and hosts: events and hypotheses sharded with JAX's own runtime.

diffana's computations are pure functions of arrays, so running them on several
devices only needs *where the arrays live* (``jax.sharding``); the code that
computes stays the same on one CPU, several GPUs and several hosts.

One :class:`jax.sharding.Mesh` with two named axes serves every computation:

- ``"events"`` (:data:`EVENTS`): data parallelism. The events (feature columns,
  weights, process labels) are split along their leading axis
  (:func:`shard_events`); every per-event computation (the selection network, the
  histogram entries) runs on the device holding the event, and the histograms —
  sums over events — are added across devices by one all-reduce that XLA inserts
  (GSPMD: a plain ``jax.jit`` of the unchanged training step suffices). The fits
  that follow see only histograms (a few hundred numbers) and run replicated.
- ``"hypotheses"`` (:data:`HYPOTHESES`): the mass hypotheses of a scan (windows of
  a bump hunt, templates of a limit scan) are split along their leading axis
  (:func:`shard_hypotheses`) and each device fits only its own block
  (:func:`map_shards`, a ``jax.shard_map``). Fits are while loops that differ from
  hypothesis to hypothesis, so this is explicit rather than left to GSPMD: every
  device runs its block's loops to completion with no communication.

Typical use (see docs/devices.md)::

    mesh = sharding.device_mesh(events=4)              # 4 devices, events split in 4
    events = sharding.shard_events(events, mesh)       # pads with zero-weight events
    value, grad = jax.jit(jax.value_and_grad(loss))(params, events)

    mesh = sharding.device_mesh(hypotheses=4)
    result = bump_hunt.bump_hunt(data, models, mesh=mesh)

Several hosts: call :func:`initialize_distributed` first on every process (before
any other JAX call); ``jax.devices()`` then lists the devices of every host and the
same mesh spans them all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Callable, NamedTuple, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from diffana.events import Events

__all__ = [
    "EVENTS",
    "HYPOTHESES",
    "HypothesisShards",
    "device_mesh",
    "shard_count",
    "shard_events",
    "shard_hypotheses",
    "map_shards",
    "unpad",
    "gather",
    "initialize_distributed",
]

EVENTS = "events"
"""Mesh axis along which events are split (data parallelism)."""
HYPOTHESES = "hypotheses"
"""Mesh axis along which the hypotheses of a scan are split."""


# --------------------------------------------------------------------------- the mesh
def device_mesh(events: int | None = None, hypotheses: int | None = None, *,
                devices: Sequence | None = None) -> Mesh:
    """A mesh with axes (``"events"``, ``"hypotheses"``) over ``devices`` (default:
    ``jax.devices()``, every device of every host).

    Give either size, both, or neither: a missing size takes the devices left
    (neither: every device along ``"events"``). The product must equal the number
    of devices; to use fewer, pass ``devices=jax.devices()[:k]``. Both axes are
    ``AxisType.Auto``: XLA's partitioner (GSPMD) places the intermediate results of
    code written for one device.
    """
    devices = list(jax.devices() if devices is None else devices)
    available = len(devices)
    if available == 0:
        raise ValueError("device_mesh: no devices given")
    sizes = _axis_sizes(events, hypotheses, available)
    return jax.make_mesh(sizes, (EVENTS, HYPOTHESES), axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def _axis_sizes(events: int | None, hypotheses: int | None, available: int) -> tuple[int, int]:
    """(events, hypotheses) sizes that use exactly ``available`` devices, or a
    one-line error naming the sizes asked and the devices there are."""
    for name, size in ((EVENTS, events), (HYPOTHESES, hypotheses)):
        if size is not None and (int(size) != size or size < 1):
            raise ValueError(f"device_mesh: {name}={size!r} must be a positive integer")
    if events is None and hypotheses is None:
        return available, 1
    if events is None or hypotheses is None:
        given = events if hypotheses is None else hypotheses
        axis = EVENTS if hypotheses is None else HYPOTHESES
        if given > available:
            raise ValueError(f"device_mesh: {axis}={given} needs more devices than the {available} available")
        if available % given:
            raise ValueError(f"device_mesh: {axis}={given} does not divide the {available} available devices "
                             "(pass devices=jax.devices()[:k] to use k of them)")
        other = available // given
        return (given, other) if hypotheses is None else (other, given)
    if events * hypotheses != available:
        raise ValueError(f"device_mesh: events={events} x hypotheses={hypotheses} = {events * hypotheses} "
                         f"devices, but {available} are available "
                         "(pass devices=jax.devices()[:k] to use k of them)")
    return int(events), int(hypotheses)


def shard_count(mesh: Mesh, axis: str) -> int:
    """Number of shards along ``axis`` (``"events"`` or ``"hypotheses"``) of ``mesh``."""
    if axis not in mesh.shape:
        raise ValueError(f"mesh has no axis {axis!r}; its axes: {tuple(mesh.shape)}")
    return int(mesh.shape[axis])


# --------------------------------------------------------------------------- leading axes
def _leading_size(tree, what: str) -> int:
    """The common leading-axis length of every array leaf of ``tree``, or a one-line
    error naming the first leaf that differs."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    arrays = [(jax.tree_util.keystr(path), np.shape(leaf)) for path, leaf in leaves if _is_array(leaf)]
    if not arrays:
        raise ValueError(f"{what}: no arrays to shard")
    first_path, first_shape = arrays[0]
    for path, shape in arrays:
        if len(shape) == 0:
            raise ValueError(f"{what}: leaf {path or '<root>'} is a scalar; every array needs the leading {what} axis")
        if shape[0] != first_shape[0]:
            raise ValueError(f"{what}: leaf {path or '<root>'} has {shape[0]} entries along its leading axis, "
                             f"leaf {first_path or '<root>'} has {first_shape[0]}")
    return int(first_shape[0])


def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray))


def _repeat_last(tree, n_rows: int):
    """Every array leaf extended to ``n_rows`` rows by repeating its last row."""
    def extend(leaf):
        if not _is_array(leaf):
            return leaf
        rows = np.minimum(np.arange(n_rows), leaf.shape[0] - 1)
        return leaf[rows]
    return jax.tree_util.tree_map(extend, tree)


def _placed(tree, mesh: Mesh, axis: str, rows_per_process: bool = False):
    """Every array leaf of ``tree`` put on ``mesh``, split along ``axis`` by its
    leading dimension (its other dimensions whole). ``rows_per_process``: with
    several processes, each passes its own rows (the events it read), joined in
    process order; otherwise every process passes the same, whole array."""
    sharding = NamedSharding(mesh, PartitionSpec(axis))

    def put(leaf):
        if not _is_array(leaf):
            return leaf
        if rows_per_process and jax.process_count() > 1:
            return jax.make_array_from_process_local_data(sharding, np.asarray(leaf))
        return jax.device_put(leaf, sharding)
    return jax.tree_util.tree_map(put, tree)


def gather(tree):
    """Every array leaf as a numpy array holding all its rows, on every process:
    with several hosts, a sharded result spans devices this process cannot read,
    and is gathered from the other processes first (a collective: every process
    must call it)."""
    from jax.experimental import multihost_utils

    def whole(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf) if _is_array(leaf) else leaf
    return jax.tree_util.tree_map(whole, tree)


def unpad(tree, n_rows: int):
    """Every array leaf's first ``n_rows`` rows: the real hypotheses of a padded
    :class:`HypothesisShards` stack (or of an output computed from one)."""
    return jax.tree_util.tree_map(lambda leaf: leaf[:n_rows] if _is_array(leaf) else leaf, tree)


# --------------------------------------------------------------------------- events
def shard_events(tree, mesh: Mesh):
    """``tree`` (an :class:`~diffana.events.Events`, a dict of (N,) columns or any
    PyTree whose array leaves all have the leading event axis N) placed on ``mesh``
    split along ``"events"``; replicated along ``"hypotheses"``.

    When N is not a multiple of the number of event shards, the events are padded
    by repeating the last event with **zero weight** — which needs a weight: the
    ``weight`` of an ``Events`` or the ``"weight"`` entry of a dict. A zero-weight
    event adds exactly 0 to every histogram and to every gradient, so results are
    those of the unpadded events. More shards than events is an error.

    Several hosts: each process passes its own events (the same number on every
    process) for a mesh whose ``"events"`` axis spans every device
    (``device_mesh(events=jax.device_count())``); the global array holds them in
    process order.
    """
    shards = shard_count(mesh, EVENTS) // max(1, jax.process_count())
    n_events = _leading_size(tree, "events")
    if n_events < shards:
        raise ValueError(f"shard_events: {n_events} events cannot be split into {shards} event shards "
                         "(more shards than events)")
    padded_size = math.ceil(n_events / shards) * shards
    if padded_size != n_events:
        tree = _with_zero_weight_padding(tree, n_events, padded_size, shards)
    return _placed(tree, mesh, EVENTS, rows_per_process=True)


def _with_zero_weight_padding(tree, n_events: int, padded_size: int, shards: int):
    """``tree`` padded to ``padded_size`` events, the added events of weight 0."""
    padded = _repeat_last(tree, padded_size)
    real = np.arange(padded_size) < n_events
    if isinstance(tree, Events):
        return eqx.tree_at(lambda e: e.weight, padded, jnp.where(real, padded.weight, 0.0))
    if isinstance(tree, Mapping) and "weight" in tree:
        return {**padded, "weight": jnp.where(real, padded["weight"], 0.0)}
    raise ValueError(f"shard_events: {n_events} events do not divide into {shards} event shards, and padding "
                     "needs a weight to set to 0 (an Events, or a dict with a 'weight' column); "
                     f"pass a multiple of {shards} events")


# --------------------------------------------------------------------------- hypotheses
class HypothesisShards(NamedTuple):
    """A stack of hypotheses placed on a mesh, padded to a multiple of the shards."""

    stack: object  # the PyTree, every array leaf (n_padded, ...) split along "hypotheses"
    n_hypotheses: int  # the real hypotheses: rows [0, n_hypotheses); the rest repeat the last


def shard_hypotheses(tree, mesh: Mesh) -> HypothesisShards:
    """``tree`` (any PyTree whose array leaves all have the leading hypothesis axis
    M: stacked models, their data rows, templates) placed on ``mesh`` split along
    ``"hypotheses"``, replicated along ``"events"``.

    Padding: when M is not a multiple of the shards, the last hypothesis is
    repeated (a real hypothesis, so its fits stay well posed and take no longer
    than the others); the result says how many are real, and :func:`unpad` drops
    the rest from any output. A scan is fast when M is a multiple of the shards, but
    need not be one.
    """
    shards = shard_count(mesh, HYPOTHESES)
    n_hypotheses = _leading_size(tree, "hypotheses")
    padded_size = math.ceil(n_hypotheses / shards) * shards
    if padded_size != n_hypotheses:
        tree = _repeat_last(tree, padded_size)
    return HypothesisShards(stack=_placed(tree, mesh, HYPOTHESES), n_hypotheses=n_hypotheses)


def map_shards(function: Callable, mesh: Mesh, axis: str = HYPOTHESES) -> Callable:
    """``function(*stacked)`` run by every device on its own block of the leading
    axis of ``stacked`` (split along mesh axis ``axis``), the blocks' outputs joined
    along their leading axis: ``jax.shard_map`` with every array split by its
    leading dimension.

    ``function`` must map a block of rows to the same rows of output (a vmap, a
    ``lax.map``): it sees only its own device's rows and never communicates.
    Non-array leaves of ``stacked`` (static fields of models) pass through
    unchanged. The leading size must be a multiple of the shards
    (:func:`shard_hypotheses` pads). Works inside ``jax.jit`` and under ``jax.grad``.
    """
    spec = PartitionSpec(axis)

    def run(*stacked):
        dynamic, static = eqx.partition(stacked, eqx.is_array)
        n_rows = _leading_size(dynamic, axis)
        shards = shard_count(mesh, axis)
        if n_rows % shards:
            raise ValueError(f"map_shards: {n_rows} rows do not divide into {shards} shards of {axis!r} "
                             "(pad with shard_hypotheses)")

        def block(local):
            return function(*eqx.combine(local, static))

        # check_vma=False: the solvers' loops start from constants (device-invariant)
        # and carry per-device values, which the varying-axes type check rejects;
        # the check guards collectives, and a block uses none.
        return jax.shard_map(block, mesh=mesh, in_specs=spec, out_specs=spec, axis_names={axis},
                             check_vma=False)(dynamic)

    return run


# --------------------------------------------------------------------------- several hosts
def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, **options) -> None:
    """Join this process to a multi-host JAX run: ``jax.distributed.initialize``.

    Call it once per process, first thing, before any other JAX call. Afterwards
    ``jax.devices()`` lists the devices of all hosts, ``jax.local_devices()`` this
    host's, and :func:`device_mesh` spans them all. Under SLURM (``srun``), Open
    MPI or on Cloud TPU the three arguments are found from the environment and may
    be omitted; elsewhere give them all:

    - ``coordinator_address``: ``"host:port"`` of process 0, reachable by every process;
    - ``num_processes``: the number of processes (usually one per host);
    - ``process_id``: this process's index in ``[0, num_processes)``.

    ``options`` go to ``jax.distributed.initialize`` unchanged (e.g.
    ``local_device_ids``, ``initialization_timeout`` in s). Under SLURM, JAX gives
    each process one GPU (number ``SLURM_LOCALID``): run one task per GPU, or pass
    ``local_device_ids=[0, 1, 2, 3]`` with one task per node. See docs/devices.md.
    """
    given = [coordinator_address is None, num_processes is None, process_id is None]
    if any(given) and not all(given):
        raise ValueError("initialize_distributed: give coordinator_address, num_processes and process_id "
                         "together, or none of them (to detect them from SLURM / MPI)")
    if num_processes is not None and not 0 <= int(process_id) < int(num_processes):
        raise ValueError(f"initialize_distributed: process_id={process_id} is outside [0, {num_processes})")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, **options)
