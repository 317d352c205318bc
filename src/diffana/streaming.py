"""Exact gradients on samples larger than memory: stream the events in chunks.

Every objective diffana trains (expected limits, significances, CLs) depends on the
events only through histograms, and a histogram is a *sum over events*. So the
histograms of a sample too large for memory are the sum of the histograms of its
chunks, and the gradient of the objective follows from the chain rule, chunk by chunk:

1. forward pass: ``H = Σ_c histograms(params, chunk_c)`` (one jitted call per chunk);
2. ``L = objective(params, H)``, with ``∂L/∂H`` and ``∂L/∂params`` (direct part);
3. backward pass: ``dL/dparams = ∂L/∂params + Σ_c (∂histograms(params, chunk_c)/∂params)ᵀ ∂L/∂H``,
   each term a vector–Jacobian product of the chunk recomputed (one jitted call per chunk).

Nothing is approximated: the result equals the in-memory value and gradient up to
floating-point summation order (1e-10 relative is tested). Memory is O(chunk): one
chunk, its network activations and the (small) histograms are alive at a time.

A :class:`ChunkedSource` yields :class:`diffana.events.Events` chunks of exactly
``chunk_size`` events: the short last chunk (of each file) is padded with copies of its
first event at weight 0, so one compiled function serves every chunk, and the padding
adds exactly 0 to every histogram and gradient (a real event's values cannot produce a
NaN, as zeros could through e.g. ``log(x)``). This requires ``histograms`` to multiply
every event's contribution by its weight — as :func:`diffana.soft.process_histograms`
does. Each chunk is validated when read (branches present, finite values, labels in
range); errors name the file, the chunk and the branch, and are raised before any value
or gradient is returned, so a training step never applies a partial update.

Usage::

    source = ChunkedSource.from_root(["mc_1.root", "mc_2.root"], features=["x", "m"],
                                     process_names=("signal", "background"),
                                     chunk_size=200_000, memory_cap=2**30)
    loss = StreamedLoss(histograms=my_histograms, objective=my_objective)
    value, grads = streamed_value_and_grad(loss.histograms, loss.objective, net, source)
    result = diffana.train.train(loss, net, source, n_steps=100)   # full-batch steps
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffana.errors import ConfigError, SampleIOError
from diffana.events import Events

__all__ = [
    "ChunkedSource",
    "StreamedLoss",
    "streamed_value_and_grad",
    "streamed_train_step",
    "bytes_per_event",
    "check_streamed_arguments",
    "ChunkProgress",
]

Array = jax.Array

WEIGHT = "weight"
PROCESS = "process"


def bytes_per_event(n_features: int) -> int:
    """Bytes one event of a chunk occupies as diffana holds it: float64 features and
    weight, an int32 process label. ``chunk_size × bytes_per_event`` is what
    ``memory_cap`` bounds (network activations come on top, see docs/streaming.md)."""
    return 8 * (n_features + 1) + 4


def _check_chunk_settings(chunk_size, n_features: int, memory_cap) -> None:
    """Raise a ConfigError for a chunk size that is not a positive integer or whose
    arrays would exceed ``memory_cap`` bytes — before anything is read."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive number of events, got {chunk_size!r}")
    if memory_cap is None:
        return
    row = bytes_per_event(n_features)
    if chunk_size * row > memory_cap:
        raise ConfigError(
            f"chunk_size {chunk_size} events x {row} bytes per event = {chunk_size * row} bytes "
            f"exceeds memory_cap {memory_cap} bytes; use chunk_size <= {memory_cap // row}"
        )


# --------------------------------------------------------------------------- chunk reading
@dataclasses.dataclass(frozen=True)
class ChunkOrigin:
    """Where a chunk comes from, for error messages: ``source`` (a file path, "arrays"
    or the generator's name), ``index`` (chunk number within ``source``) and
    ``first_event`` (index of its first event within ``source``)."""

    source: str
    index: int
    first_event: int

    def __str__(self) -> str:
        return f"{self.source}, chunk {self.index} (from event {self.first_event})"


RawChunks = Callable[[], Iterator[tuple[ChunkOrigin, Mapping[str, Any]]]]


def _validated_columns(columns, origin: ChunkOrigin, features, process_names, chunk_size):
    """The chunk's columns as 1-D numpy arrays; SampleIOError naming the chunk and the
    branch for a missing branch, unequal lengths, too many events, non-finite values or
    process labels outside ``process_names``."""
    needed = (*features, WEIGHT, PROCESS)
    missing = [name for name in needed if name not in columns]
    if missing:
        raise SampleIOError(
            f"{origin}: missing branch(es) {missing}; the chunk has {sorted(columns)}"
        )
    arrays = {name: np.asarray(columns[name]) for name in needed}
    lengths = {name: a.shape for name, a in arrays.items()}
    n = len(arrays[WEIGHT]) if arrays[WEIGHT].ndim == 1 else -1
    if any(shape != (n,) for shape in lengths.values()):
        raise SampleIOError(f"{origin}: branches need one number per event, got shapes {lengths}")
    if n > chunk_size:
        raise SampleIOError(f"{origin}: {n} events, more than chunk_size {chunk_size}")
    for name in (*features, WEIGHT):
        finite = np.isfinite(arrays[name])
        if not finite.all():
            first = origin.first_event + int(np.argmin(finite))
            raise SampleIOError(
                f"{origin}: branch {name!r} has {int((~finite).sum())} non-finite (NaN/inf) "
                f"value(s), first at event {first}"
            )
    labels = arrays[PROCESS]
    if n and (np.any(labels != np.round(labels)) or labels.min() < 0 or labels.max() >= len(process_names)):
        raise SampleIOError(
            f"{origin}: branch 'process' holds labels in [{labels.min()}, {labels.max()}], "
            f"expected integers in [0, {len(process_names)}) for processes {process_names}"
        )
    return arrays


def _padded_events(arrays, features, process_names, chunk_size) -> Events:
    """An Events of exactly ``chunk_size`` events: the real ones, then copies of the
    first event at weight 0 (finite values: the padding adds exactly 0 everywhere)."""
    n = len(arrays[WEIGHT])
    pad = chunk_size - n

    def padded(column, fill):
        return np.concatenate([column, np.full(pad, fill, dtype=column.dtype)]) if pad else column

    return Events(
        features={name: jnp.asarray(padded(arrays[name].astype(np.float64, copy=False), arrays[name][0]))
                  for name in features},
        weight=jnp.asarray(padded(arrays[WEIGHT].astype(np.float64, copy=False), 0.0)),
        process=jnp.asarray(padded(arrays[PROCESS].astype(np.int32, copy=False), arrays[PROCESS][0])),
        process_names=tuple(process_names),
    )


def _events_columns(events: Events) -> dict[str, np.ndarray]:
    """An Events as a dict of numpy columns (features, weight, process)."""
    columns = {name: np.asarray(column) for name, column in events.features.items()}
    columns[WEIGHT] = np.asarray(events.weight)
    columns[PROCESS] = np.asarray(events.process)
    return columns


# --------------------------------------------------------------------------- the source
@dataclasses.dataclass(frozen=True)
class ChunkedSource:
    """A re-iterable sample read chunk by chunk: iterating yields
    :class:`diffana.events.Events` of exactly ``chunk_size`` events each (the last chunk
    of each file padded with weight-0 events), validated when read.

    Build it with :meth:`from_root`, :meth:`from_arrays` or :meth:`from_generator`.
    Every chunk holds the ``features`` columns (float64, in their physical units), the
    ``weight`` (expected events per simulated event) and the ``process`` label (an index
    into ``process_names``). Iterating twice must give the same chunks (the backward
    pass re-reads them); ``n_chunks`` is the number of chunks one pass yields.
    ``memory_cap`` (bytes, optional) bounds ``chunk_size × bytes_per_event``.
    """

    raw_chunks: RawChunks = dataclasses.field(repr=False)
    chunk_size: int
    n_chunks: int
    features: tuple[str, ...]
    process_names: tuple[str, ...]
    description: str
    memory_cap: int | None = None

    def __post_init__(self):
        _check_chunk_settings(self.chunk_size, len(self.features), self.memory_cap)
        if self.n_chunks < 1:
            raise SampleIOError(f"{self.description}: no events to stream")
        if not self.process_names:
            raise ConfigError("ChunkedSource: process_names is empty")

    def __iter__(self) -> Iterator[Events]:
        for _, chunk in self.labelled_chunks():
            yield chunk

    def labelled_chunks(self) -> Iterator[tuple[ChunkOrigin, Events]]:
        """``(origin, chunk)`` pairs: validated, padded chunks and where they come from."""
        for origin, columns in self.raw_chunks():
            arrays = _validated_columns(columns, origin, self.features, self.process_names,
                                        self.chunk_size)
            if len(arrays[WEIGHT]):  # a chunk emptied by nan_policy="drop" adds nothing
                yield origin, _padded_events(arrays, self.features, self.process_names,
                                             self.chunk_size)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        sample: Events | Mapping[str, Any],
        chunk_size: int,
        *,
        features: Sequence[str] | None = None,
        process_names: Sequence[str] | None = None,
        memory_cap: int | None = None,
    ) -> "ChunkedSource":
        """Chunks of an in-memory sample: an :class:`Events`, or a dict of equal-length
        columns with ``weight`` and ``process`` (then ``process_names`` is required).
        ``features`` defaults to every other column. For tests and small data."""
        if isinstance(sample, Events):
            process_names = sample.process_names if process_names is None else process_names
            sample = _events_columns(sample)
        if process_names is None:
            raise ConfigError("ChunkedSource.from_arrays: process_names is required for a dict sample")
        features = tuple(features or [k for k in sample if k not in (WEIGHT, PROCESS)])
        _check_chunk_settings(chunk_size, len(features), memory_cap)
        if WEIGHT not in sample:
            raise SampleIOError(f"ChunkedSource.from_arrays: the sample has no {WEIGHT!r} column")
        n_events = len(np.asarray(sample[WEIGHT]))

        def raw_chunks():
            for index, start in enumerate(range(0, n_events, chunk_size)):
                yield (ChunkOrigin("arrays", index, start),
                       {k: np.asarray(v)[start:start + chunk_size] for k, v in sample.items()})

        return cls(raw_chunks, int(chunk_size), math.ceil(n_events / chunk_size), features,
                   tuple(process_names), f"arrays ({n_events} events)", memory_cap)

    @classmethod
    def from_generator(
        cls,
        make_chunk: Callable[[int], Events | Mapping[str, Any]],
        n_chunks: int,
        *,
        chunk_size: int,
        features: Sequence[str],
        process_names: Sequence[str],
        memory_cap: int | None = None,
        name: str = "generator",
    ) -> "ChunkedSource":
        """Chunks made on demand: ``make_chunk(i)`` for ``i`` in ``range(n_chunks)``
        returns an Events or a dict of columns with at most ``chunk_size`` events. It
        must return the same chunk for the same ``i`` (seed it with ``i``): the backward
        pass calls it again. ``name`` appears in error messages."""
        features = tuple(features)
        _check_chunk_settings(chunk_size, len(features), memory_cap)

        def raw_chunks():
            first = 0
            for index in range(n_chunks):
                chunk = make_chunk(index)
                columns = _events_columns(chunk) if isinstance(chunk, Events) else chunk
                yield ChunkOrigin(name, index, first), columns
                first += len(np.asarray(columns.get(WEIGHT, ())))

        return cls(raw_chunks, int(chunk_size), int(n_chunks), features, tuple(process_names),
                   name, memory_cap)

    @classmethod
    def from_root(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        tree: str | None = None,
        *,
        features: Sequence[str],
        process_names: Sequence[str],
        chunk_size: int,
        branch_map: Mapping[str, str | tuple[str, float]] | None = None,
        memory_cap: int | None = None,
        nan_policy: str = "raise",
    ) -> "ChunkedSource":
        """Chunks of ``chunk_size`` events read from TTree ``tree`` of each ROOT file in
        ``paths`` with :func:`diffana.io.iterate_sample` (same ``branch_map`` renaming
        and ``nan_policy``). The files must hold the ``features``, ``weight`` and
        ``process`` branches (after renaming); every file is opened and checked here,
        before any event is read, so a file lacking a branch fails now, by name."""
        from diffana import io

        features = tuple(features)
        _check_chunk_settings(chunk_size, len(features), memory_cap)
        tree = io.DEFAULT_TREE if tree is None else tree
        paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        if not paths:
            raise SampleIOError("ChunkedSource.from_root: no files given")
        branches = [*features, WEIGHT, PROCESS]
        entries = [_checked_entries(path, tree, branches, branch_map) for path in paths]

        def raw_chunks():
            for path in paths:
                chunks = io.iterate_sample(path, tree, branches=branches, branch_map=branch_map,
                                           step_size=chunk_size, nan_policy=nan_policy)
                yield from _labelled(chunks, path, chunk_size)

        n_chunks = sum(math.ceil(n / chunk_size) for n in entries)
        return cls(raw_chunks, int(chunk_size), n_chunks, features, tuple(process_names),
                   f"{len(paths)} ROOT file(s) ({sum(entries)} events)", memory_cap)


def _checked_entries(path: str, tree: str, branches, branch_map) -> int:
    """Number of entries of ``path:tree`` after checking that every branch exists
    (SampleIOError naming the file and the branch otherwise). Reads metadata only."""
    from diffana import io

    return io.count_entries(path, tree, branches=branches, branch_map=branch_map)


def _labelled(chunks: Iterator, path: str, chunk_size: int):
    """Pair each chunk read from ``path`` with its origin (chunk number within the
    file); a read error (e.g. NaN in a branch, found by diffana.io) is re-raised naming
    the file and the chunk."""
    for index in itertools.count():
        origin = ChunkOrigin(path, index, index * chunk_size)
        try:
            columns = next(chunks)
        except StopIteration:
            return
        except SampleIOError as error:
            raise SampleIOError(f"{origin}: {error}") from error
        yield origin, columns


# --------------------------------------------------------------------------- the two passes
def _takes_step(fn) -> bool:
    try:
        return "step" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _call(fn, *args, step):
    """``fn(*args, step=step)`` when ``fn`` has a ``step`` parameter, else ``fn(*args)``."""
    return fn(*args, step=step) if _takes_step(fn) else fn(*args)


def _tree_add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def _zeros_like_histograms(histograms, params, chunk, step):
    shapes = jax.eval_shape(lambda p, c: _call(histograms, p, c, step=step), params, chunk)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@eqx.filter_jit
def _add_chunk_histograms(histograms, diff, static, chunk, step, totals):
    """Forward pass, one chunk: ``totals + histograms(params, chunk)``."""
    return _tree_add(totals, _call(histograms, eqx.combine(diff, static), chunk, step=step))


@eqx.filter_jit
def _objective_value_and_grads(objective, diff, static, totals, step):
    """``L(params, H)``, ``∂L/∂params`` (direct dependence) and ``∂L/∂H``."""

    def loss(d, h):
        return _call(objective, eqx.combine(d, static), h, step=step)

    value, (direct, cotangent) = jax.value_and_grad(loss, argnums=(0, 1))(diff, totals)
    return value, direct, cotangent


@eqx.filter_jit
def _add_chunk_vjp(histograms, diff, static, chunk, step, cotangent, grads):
    """Backward pass, one chunk: ``grads + (∂histograms(params, chunk)/∂params)ᵀ cotangent``
    (the chunk's histograms recomputed rather than stored)."""
    _, pullback = jax.vjp(lambda d: _call(histograms, eqx.combine(d, static), chunk, step=step), diff)
    (chunk_grads,) = pullback(cotangent)
    return _tree_add(grads, chunk_grads)


@dataclasses.dataclass(frozen=True)
class StreamedLoss:
    """A loss evaluated by streaming: ``objective(params, Σ_chunks histograms(params, chunk))``.

    ``histograms(params, chunk) -> pytree of arrays`` must be additive over events (each
    event's contribution times its weight: padding events have weight 0), e.g. the
    (processes, bins) yields of :func:`diffana.soft.process_histograms`.
    ``objective(params, histograms) -> scalar``. Either may take a ``step`` keyword (the
    traced training step, for annealing). Pass a StreamedLoss and a
    :class:`ChunkedSource` to :func:`diffana.train.train` to train full-batch on the
    source; frozen and hashed by its two functions, so repeated runs reuse the compiled
    per-chunk functions.
    """

    histograms: Callable[..., Any]
    objective: Callable[..., Array]

    def value_and_grad(self, diff, static, source: ChunkedSource, step=0,
                       on_chunk: Callable[[str, int], None] | None = None):
        """Value and gradient with respect to ``diff`` (the trainable part of
        ``eqx.combine(diff, static)``) over every chunk of ``source``. ``on_chunk(pass,
        done)`` is called after each chunk (``pass`` "forward" or "backward")."""
        step = jnp.asarray(step)
        report = on_chunk or (lambda name, done: None)
        totals = None
        n_forward = 0
        for chunk in source:
            if totals is None:  # zeros of the histograms' shapes (traced, not computed)
                totals = _zeros_like_histograms(self.histograms, eqx.combine(diff, static), chunk, step)
            totals = _add_chunk_histograms(self.histograms, diff, static, chunk, step, totals)
            n_forward += 1
            report("forward", n_forward)
        if totals is None:
            raise SampleIOError(f"{source.description}: no events in any chunk (all dropped?)")
        value, grads, cotangent = _objective_value_and_grads(self.objective, diff, static, totals, step)
        n_backward = 0
        for chunk in source:
            grads = _add_chunk_vjp(self.histograms, diff, static, chunk, step, cotangent, grads)
            n_backward += 1
            report("backward", n_backward)
        if n_backward != n_forward:
            raise SampleIOError(
                f"{source.description}: {n_forward} chunks in the forward pass but {n_backward} "
                "in the backward pass; a source must yield the same chunks every time"
            )
        return value, grads


# --------------------------------------------------------------------------- public entry points
def streamed_value_and_grad(
    histograms: Callable[..., Any],
    objective: Callable[..., Array],
    params: Any,
    source: ChunkedSource,
    *,
    step: int = 0,
    progress: bool = False,
    trainable: Callable[[Any], bool] = eqx.is_inexact_array,
):
    """``(value, grads)`` of ``objective(params, Σ_chunks histograms(params, chunk))``
    over every chunk of ``source``, exact (two passes, module docs).

    ``grads`` has the structure of ``params`` with the leaves selected by ``trainable``
    (default: float arrays, as ``eqx.filter_grad``) and None elsewhere. ``progress``
    shows a rich bar over the chunks of both passes. Every chunk is read and validated
    before anything is returned: a bad chunk raises a SampleIOError naming it.
    """
    diff, static = eqx.partition(params, trainable)
    loss = StreamedLoss(histograms, objective)
    with ChunkProgress(progress, source.n_chunks) as bar:
        return loss.value_and_grad(diff, static, source, step, bar.on_chunk)


@eqx.filter_jit
def _apply_update(optimizer, grads, opt_state, diff):
    """The optimiser update, jitted apart from the passes; also whether every gradient
    is finite (the update is applied by the caller only then)."""
    finite = jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)] or [True]))
    updates, new_state = optimizer.update(grads, opt_state, diff)
    return optax.apply_updates(diff, updates), new_state, finite


def streamed_train_step(loss: StreamedLoss, optimizer: optax.GradientTransformation, static,
                        source: ChunkedSource, diff, opt_state, step,
                        on_chunk: Callable[[str, int], None] | None = None):
    """One full-batch optimiser step on ``source``: ``(new_diff, new_opt_state, loss,
    gradient_is_finite)``, as :func:`diffana.train.train`'s in-memory step returns."""
    value, grads = loss.value_and_grad(diff, static, source, step, on_chunk)
    new_diff, new_state, finite = _apply_update(optimizer, grads, opt_state, diff)
    return new_diff, new_state, value, finite


def check_streamed_arguments(loss_fn, data, batch_size) -> None:
    """The checks :func:`diffana.train.train` makes before streaming: a StreamedLoss
    goes with a ChunkedSource and full batches (one clear ValueError otherwise)."""
    if not isinstance(loss_fn, StreamedLoss):
        raise ConfigError(
            "train: data is a ChunkedSource, so loss_fn must be a diffana.streaming.StreamedLoss "
            f"(histograms + objective), got {type(loss_fn).__name__}"
        )
    if not isinstance(data, ChunkedSource):
        raise ConfigError(
            f"train: loss_fn is a StreamedLoss, so data must be a ChunkedSource, got {type(data).__name__}"
        )
    if batch_size is not None:
        raise ConfigError(
            f"train: batch_size must be None when streaming a ChunkedSource (every step uses "
            f"all {data.n_chunks} chunks), got {batch_size}"
        )


# --------------------------------------------------------------------------- progress
class ChunkProgress:
    """A rich progress bar over the chunks of the forward and backward passes, or
    nothing when disabled. ``on_chunk`` is the callback the passes report to. With
    ``progress`` (a running ``rich.progress.Progress``, e.g. train's) it adds its row
    there instead of starting a display of its own (rich allows one at a time)."""

    def __init__(self, enabled: bool, n_chunks: int, progress=None):
        self.enabled = enabled
        self.n_chunks = n_chunks
        self.progress = progress
        self.owns_progress = progress is None
        self.task = None

    def start(self) -> "ChunkProgress":
        if not self.enabled:
            return self
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                     MofNCompleteColumn())
            self.progress.start()
        self.task = self.progress.add_task("chunks", total=2 * self.n_chunks, status="")
        return self

    def on_chunk(self, name: str, done: int) -> None:
        if self.task is None:
            return
        completed = done if name == "forward" else self.n_chunks + done
        self.progress.update(self.task, completed=completed, description=f"{name} pass, chunks")

    def stop(self) -> None:
        if self.task is not None and self.owns_progress:
            self.progress.stop()

    def __enter__(self) -> "ChunkProgress":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False
