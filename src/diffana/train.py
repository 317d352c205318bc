"""Training loop on optax: full batch or minibatches, schedules, early stopping,
progress bar, history, deterministic seeds and bit-exact checkpoint/resume.

The loop is deliberately small: one jitted step ``(params, opt_state, data, step) ->
(params, opt_state, loss)`` driven from Python. Everything random in a step (the
minibatch) is derived from ``(seed key, step)`` alone, so a run interrupted after any
step and resumed from its checkpoint replays exactly the same updates: on CPU the final
parameters are bit-identical to an uninterrupted run.

Usage::

    def loss(selection, events, step):           # ``step`` is optional
        ...                                       # -> scalar
    result = train(loss, selection, events, n_steps=500,
                   optimizer=optax.adam(optax.cosine_decay_schedule(3e-3, 500)),
                   batch_size=4096, seed=0, checkpoint_path="ckpt/")
    result.params, result.history.plot()
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from diffana.events import Events
from diffana.streaming import (ChunkedSource, ChunkProgress, StreamedLoss, check_streamed_arguments,
                               streamed_train_step)

__all__ = ["History", "TrainResult", "train", "save_checkpoint", "load_checkpoint"]

Array = jax.Array


@dataclasses.dataclass
class History:
    """Per-step record of a training run (plain Python lists, JSON-serialisable).

    ``step``: step index; ``loss``: training loss at that step (before its update);
    ``validation_step`` / ``validation_loss``: when validation ran; ``wall_time``:
    seconds since the run (or resumed run) started, for information only.
    """

    step: list[int] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    validation_step: list[int] = dataclasses.field(default_factory=list)
    validation_loss: list[float] = dataclasses.field(default_factory=list)
    wall_time: list[float] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: list(d.get(f.name, [])) for f in dataclasses.fields(cls)})

    def plot(self, ax=None, label: str | None = None, logy: bool = False):
        """Training (and validation) loss versus step on a matplotlib axis; returns it."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots()
        name = label or "loss"
        (line,) = ax.plot(self.step, self.loss, label=f"{name} (train)")
        if self.validation_step:
            ax.plot(self.validation_step, self.validation_loss, "--", color=line.get_color(),
                    label=f"{name} (validation)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if logy:
            ax.set_yscale("log")
        ax.legend()
        return ax


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`.

    ``params``: final parameters (the best ones if ``restore_best``); ``history``;
    ``step``: steps done; ``opt_state``; ``stopped_early``; ``best_step`` /
    ``best_loss``: of the monitored loss (validation if given, else training).
    """

    params: Any
    history: History
    step: int
    opt_state: Any
    stopped_early: bool
    best_step: int
    best_loss: float


# --------------------------------------------------------------------------- checkpoints
_STATE_FILE = "state.eqx"
_META_FILE = "meta.json"


def save_checkpoint(path, params, opt_state, best_params, key, step: int, meta: dict) -> None:
    """Write a checkpoint directory ``path`` atomically enough to survive a kill.

    Arrays (params, optimiser state, best params, PRNG key, step) go through
    ``eqx.tree_serialise_leaves`` into ``state.eqx``; ``meta`` (history, early-stopping
    counters) into ``meta.json``. Each file is written to a temporary name and renamed;
    the step is stored in both and checked on load.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (_STATE_FILE + ".tmp")
    with open(tmp, "wb") as f:
        eqx.tree_serialise_leaves(f, (params, opt_state, best_params, key, jnp.asarray(step)))
    os.replace(tmp, path / _STATE_FILE)
    tmp = path / (_META_FILE + ".tmp")
    with open(tmp, "w") as f:
        # json writes floats with repr: they round-trip exactly
        json.dump({**meta, "step": int(step)}, f)
    os.replace(tmp, path / _META_FILE)


def load_checkpoint(path, params_like, opt_state_like, key_like):
    """Read a checkpoint written by :func:`save_checkpoint`.

    ``*_like``: pytrees of the same structure (the initial params, ``optimizer.init``
    of them, the seed key). Returns ``(params, opt_state, best_params, key, step, meta)``.
    Raises a ValueError if the two files disagree on the step (a torn write).
    """
    path = Path(path)
    with open(path / _META_FILE) as f:
        meta = json.load(f)
    with open(path / _STATE_FILE, "rb") as f:
        params, opt_state, best_params, key, step = eqx.tree_deserialise_leaves(
            f, (params_like, opt_state_like, params_like, key_like, jnp.asarray(0))
        )
    if int(step) != int(meta["step"]):
        raise ValueError(
            f"checkpoint {path}: state file is at step {int(step)} but meta.json at step "
            f"{meta['step']} (interrupted write); delete the directory to restart"
        )
    return params, opt_state, best_params, key, int(step), meta


# --------------------------------------------------------------------------- batching
def _n_events(data) -> int:
    if isinstance(data, Events):
        return data.n_events
    leaves = [x for x in jax.tree_util.tree_leaves(data) if eqx.is_array(x)]
    if not leaves:
        raise ValueError("train: data has no arrays to batch over")
    n = {x.shape[0] if x.ndim else None for x in leaves}
    if len(n) != 1 or None in n:
        raise ValueError(f"train: all data arrays need the same leading (event) axis, got {n}")
    return n.pop()


def _batch(data, key, step, n_events: int, batch_size: int | None):
    """The minibatch of ``step``: a slice of the permutation of its epoch."""
    if batch_size is None:
        return data
    n_batches = n_events // batch_size
    epoch, index = step // n_batches, step % n_batches
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), n_events)
    idx = jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size)
    if isinstance(data, Events):
        return data.minibatch(idx)
    return jax.tree_util.tree_map(lambda x: x[idx] if eqx.is_array(x) else x, data)


@eqx.filter_jit
def _train_step(loss_fn, optimizer, static, takes_step, n_events, batch_size,
                diff, opt_state, data, key, step):
    """One optimiser step. Module level so that repeated ``train`` calls with the same
    loss function and optimiser reuse the compiled step (non-array arguments are
    static, hashed by identity/value)."""
    batch = _batch(data, key, step, n_events, batch_size)

    def f(d):
        p = eqx.combine(d, static)
        return loss_fn(p, batch, step=step) if takes_step else loss_fn(p, batch)

    loss, grads = jax.value_and_grad(f)(diff)
    grads_finite = jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)] or [True]))
    updates, new_state = optimizer.update(grads, opt_state, diff)
    return optax.apply_updates(diff, updates), new_state, loss, grads_finite


def _takes_step(fn) -> bool:
    try:
        return "step" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- the loop
def train(
    loss_fn: Callable[..., Array],
    params: Any,
    data: Any,
    *,
    n_steps: int,
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int | None = None,
    seed: int | Array = 0,
    validation_fn: Callable[[Any], Array] | None = None,
    validate_every: int = 1,
    patience: int | None = None,
    min_delta: float = 0.0,
    restore_best: bool = False,
    progress: bool = True,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    callback: Callable[[int, Any, float], None] | None = None,
    trainable: Callable[[Any], bool] = eqx.is_inexact_array,
) -> TrainResult:
    """Minimise ``loss_fn(params, batch[, step=step])`` with optax.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, batch) -> scalar``; if it has a parameter named ``step`` it
        also receives the (traced) integer step, e.g. for annealing a temperature or a
        bandwidth with :mod:`diffana.soft` schedules.
    params : pytree
        Initial parameters (e.g. a selection Module). Leaves selected by ``trainable``
        (default: every float array) are trained; the rest is held fixed.
    data : Events or pytree or ChunkedSource
        Training events. With ``batch_size`` the leading axis is shuffled each epoch
        and cut into ``N // batch_size`` batches (the remainder is dropped for fixed
        shapes); an :class:`Events` batch is rescaled per process to the full yields.
        A :class:`diffana.streaming.ChunkedSource` (a sample larger than memory) goes
        with a :class:`diffana.streaming.StreamedLoss` as ``loss_fn`` and
        ``batch_size=None``: each step streams every chunk twice (exact full-batch
        gradient, see diffana.streaming) and the progress bar also shows the chunks.
    n_steps : int
        Total number of optimiser steps (including ones done before a resume).
    optimizer : optax.GradientTransformation
        Default ``optax.adam(1e-3)``; pass any optax chain / learning-rate schedule.
    seed : int or PRNG key
        Seeds the minibatch shuffling. The same seed gives the same run.
    validation_fn : callable, optional
        ``validation_fn(params) -> scalar`` (held-out loss), run every
        ``validate_every`` steps. Early stopping and ``restore_best`` monitor it when
        given, the training loss otherwise.
    patience, min_delta :
        Stop after ``patience`` monitored evaluations without an improvement larger
        than ``min_delta``. ``None`` disables early stopping.
    restore_best : bool
        Return the best monitored parameters instead of the last ones.
    progress : bool
        Show a rich progress bar with the current loss.
    checkpoint_path, checkpoint_every, resume :
        Write a checkpoint directory every ``checkpoint_every`` steps, at the end and on
        KeyboardInterrupt; with ``resume`` an existing checkpoint there is continued.
    callback : callable, optional
        ``callback(step, params, loss)`` after each step (may raise to stop).

    A non-finite loss or gradient raises a FloatingPointError naming the step, without
    applying the update. Returns a :class:`TrainResult`.
    """
    if n_steps < 0:
        raise ValueError(f"train: n_steps must be >= 0, got {n_steps}")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    streamed = isinstance(loss_fn, StreamedLoss) or isinstance(data, ChunkedSource)
    if streamed:
        check_streamed_arguments(loss_fn, data, batch_size)
    n_events = None if streamed else _n_events(data)
    if batch_size is not None:
        if not 0 < batch_size <= n_events:
            raise ValueError(f"train: batch_size must be in [1, {n_events}], got {batch_size}")
    key = jax.random.PRNGKey(seed) if isinstance(seed, int) else jnp.asarray(seed)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)

    diff, static = eqx.partition(params, trainable)
    opt_state = optimizer.init(diff)
    takes_step = _takes_step(loss_fn)

    chunk_progress = ChunkProgress(False, 0)  # replaced once the bar exists

    def step_fn(diff, opt_state, data, key, step):
        if streamed:
            return streamed_train_step(loss_fn, optimizer, static, data, diff, opt_state, step,
                                       chunk_progress.on_chunk)
        return _train_step(loss_fn, optimizer, static, takes_step, n_events, batch_size,
                           diff, opt_state, data, key, step)

    history = History()
    best_loss, best_step, bad_evals = math.inf, -1, 0
    best_diff = diff
    step = 0
    key_arr = key
    if checkpoint_path is not None and resume and (Path(checkpoint_path) / _META_FILE).exists():
        diff, opt_state, best_diff, key_arr, step, meta = load_checkpoint(
            checkpoint_path, diff, opt_state, key
        )
        history = History.from_dict(meta["history"])
        best_loss, best_step, bad_evals = meta["best_loss"], meta["best_step"], meta["bad_evals"]
        if meta.get("stopped_early"):
            n_steps = step

    def checkpoint():
        if checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path, diff, opt_state, best_diff, key_arr, step,
                {"history": history.to_dict(), "best_loss": best_loss, "best_step": best_step,
                 "bad_evals": bad_evals, "stopped_early": stopped_early},
            )

    stopped_early = False
    t0 = time.perf_counter()
    bar = _progress_bar(progress, n_steps, step)
    if streamed:
        chunk_progress = ChunkProgress(bar is not None, data.n_chunks, bar and bar[0]).start()
    try:
        while step < n_steps:
            new_diff, new_state, loss, grads_finite = step_fn(
                diff, opt_state, data, key_arr, jnp.asarray(step))
            loss = float(loss)
            if not math.isfinite(loss) or not bool(grads_finite):
                what = f"loss is {loss}" if not math.isfinite(loss) else "gradient is not finite"
                raise FloatingPointError(
                    f"train: {what} at step {step}; the update was not applied. Check for "
                    "selections that remove every event (weights underflowing to 0), NaN "
                    "inputs or a too large learning rate."
                )
            history.step.append(step)
            history.loss.append(loss)
            history.wall_time.append(time.perf_counter() - t0)
            monitored = loss
            evaluated = validation_fn is None
            if validation_fn is not None and step % validate_every == 0:
                monitored = float(validation_fn(eqx.combine(diff, static)))
                history.validation_step.append(step)
                history.validation_loss.append(monitored)
                evaluated = True
            if evaluated:
                # the loss (and validation) belong to the parameters *before* the update
                if monitored < best_loss - min_delta:
                    best_loss, best_step, bad_evals = monitored, step, 0
                    best_diff = diff
                else:
                    bad_evals += 1
            diff, opt_state = new_diff, new_state
            step += 1
            if bar is not None:
                bar[0].update(bar[1], completed=step, status=f"loss {loss:.6g}")
            if callback is not None:
                callback(step, eqx.combine(diff, static), loss)
            if patience is not None and bad_evals >= patience:
                stopped_early = True
                break
            if checkpoint_path is not None and step % checkpoint_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        if bar is not None:
            bar[0].stop()
    checkpoint()
    final = best_diff if restore_best and best_step >= 0 else diff
    return TrainResult(
        params=eqx.combine(final, static),
        history=history,
        step=step,
        opt_state=opt_state,
        stopped_early=stopped_early,
        best_step=best_step,
        best_loss=best_loss,
    )


def _progress_bar(enabled: bool, total: int, start: int):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),  # the loss; empty on a streamed run's chunk row
        TimeRemainingColumn(),
    )
    task = progress.add_task("training", total=total, completed=start, status="loss nan")
    progress.start()
    return progress, task
