"""A store of extra background MC on disk, generated in independent chunks.

Some studies need more background MC than one process can hold: the per-mass
optimum of the Punzi-net comparison at 79.7 fb⁻¹ leaves most windows with no MC at
8× the shipped statistics, and 4× already takes 5.4 GB in memory. The store writes
one file per *chunk*: every background process generated and preselected as
:func:`samples.make_samples` does for one seed (the config's event counts), but not
split and without signal. Chunks are written one at a time (memory of one chunk),
read one at a time, and skipped when already on disk, so a long store can be filled
over several runs.

Each chunk's weights sum to the expected events at the config's luminosity, like a
whole (unsplit) sample: pooling k chunks means weighting each by 1/k.

**Independence.** A chunk of seed s holds exactly the background that
``make_samples(config, s)`` generates (the same per-process seeds,
:func:`samples.background_seed`). A study must therefore draw its chunks from seeds
that no sample it compares with was made from: :func:`check_independent`. Scaling up
``background_events`` at the *same* seed is not independent either: the batches of
:func:`samples.generate_preselected` then repeat the smaller sample's batches.

Units: ``weight`` in expected events at ``luminosity`` (fb⁻¹); features as in
:mod:`.samples`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple

import numpy as np

from diffana.analyses.zprime_invisible.config import BACKGROUND_PROCESSES, Config
from diffana.analyses.zprime_invisible.samples import (
    background_event_count,
    background_seed,
    concatenate_processes,
    generate_preselected,
)
from diffana.errors import ConfigError


class StoreSettings(NamedTuple):
    """What every chunk of one store shares: chunks made with other settings do not pool."""

    luminosity: float  # fb⁻¹ the weights are expected events at
    events_per_process: dict  # generated (not preselected) events per background process
    bias: bool  # importance-sampled generation
    min_muon_delta_phi: float  # deg, the preselection's trigger opening angle


class BackgroundChunk(NamedTuple):
    """One chunk: the seed it was generated from, its settings and its preselected
    background (dict column → (N,) array, incl. ``weight`` and ``process``)."""

    seed: int
    settings: StoreSettings
    events: dict


def store_settings(config: Config) -> StoreSettings:
    """The settings a chunk generated for ``config`` carries. Only the built-in
    generator can fill a store."""
    if config.samples.source != "generator":
        raise ConfigError(f"a background store is generated; samples.source is {config.samples.source!r}")
    return StoreSettings(
        luminosity=float(config.analysis.luminosity),
        events_per_process={p: background_event_count(config, p) for p in BACKGROUND_PROCESSES},
        bias=bool(config.samples.bias),
        min_muon_delta_phi=float(config.analysis.min_muon_delta_phi),
    )


def chunk_path(directory: Path, seed: int) -> Path:
    """The file of the chunk of ``seed`` in ``directory``."""
    return Path(directory) / f"chunk_{seed}.npz"


def generate_chunk(config: Config, seed: int) -> BackgroundChunk:
    """Every background process of ``config`` generated and preselected at ``seed``
    (the background of ``make_samples(config, seed)``, unsplit)."""
    a, s = config.analysis, config.samples
    settings = store_settings(config)
    per_process = {
        process: generate_preselected(process, a.luminosity, settings.events_per_process[process],
                                      background_seed(seed, index), s.bias, a.min_muon_delta_phi)
        for index, process in enumerate(BACKGROUND_PROCESSES)
    }
    return BackgroundChunk(seed, settings, concatenate_processes(per_process))


def write_chunk(chunk: BackgroundChunk, directory: Path) -> Path:
    """Write ``chunk`` to ``directory`` (created if needed); written under a temporary
    name and renamed, so an interrupted write leaves no chunk behind."""
    path = chunk_path(directory, chunk.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial.npz")
    header = json.dumps({"seed": chunk.seed, "settings": chunk.settings._asdict()})
    np.savez(temporary, header=np.array(header), **chunk.events)
    os.replace(temporary, path)
    return path


def _refused(path: Path, error: Exception) -> ConfigError:
    return ConfigError(f"{path} is not a background-store chunk: {error}")


def _header(stored, path: Path) -> tuple[int, StoreSettings]:
    """The seed and settings in an open chunk file (only its small header is read)."""
    try:
        header = json.loads(str(stored["header"]))
        return int(header["seed"]), StoreSettings(**header["settings"])
    except (ValueError, KeyError, TypeError) as error:
        raise _refused(path, error) from None


def read_chunk(path: Path) -> BackgroundChunk:
    """The chunk stored at ``path``."""
    try:
        with np.load(path) as stored:
            seed, settings = _header(stored, path)
            events = {key: stored[key] for key in stored.files if key != "header"}
    except (OSError, ValueError) as error:
        raise _refused(path, error) from None
    return BackgroundChunk(seed, settings, events)


def read_settings(path: Path) -> StoreSettings:
    """The settings of the chunk at ``path``, without reading its events (a chunk of
    the shipped config is ≈ 280 MB)."""
    try:
        with np.load(path) as stored:
            return _header(stored, path)[1]
    except (OSError, ValueError) as error:
        raise _refused(path, error) from None


def fill_store(config: Config, directory: Path, seeds: Iterable[int],
               progress: Callable[[int, bool], None] | None = None) -> list[Path]:
    """Make sure ``directory`` holds a chunk of every seed in ``seeds`` for ``config``:
    generate and write the missing ones, keep those already there (after checking that
    they were made with the same settings). ``progress(seed, generated)`` after each."""
    wanted = store_settings(config)
    paths = []
    for seed in seeds:
        path = chunk_path(directory, seed)
        generated = not path.exists()
        if generated:
            write_chunk(generate_chunk(config, seed), directory)
        else:
            _check_settings(read_settings(path), wanted, path)
        paths.append(path)
        if progress is not None:
            progress(seed, generated)
    return paths


def _check_settings(settings: StoreSettings, wanted: StoreSettings, path: Path) -> None:
    if settings != wanted:
        raise ConfigError(f"{path} was generated with {settings}, not with this config's {wanted}")


def read_store(directory: Path, seeds: Iterable[int], config: Config) -> Iterator[BackgroundChunk]:
    """The chunks of ``seeds`` from ``directory``, one at a time, each checked against
    ``config``'s settings; a missing chunk is an error naming the seed."""
    wanted = store_settings(config)
    for seed in seeds:
        path = chunk_path(directory, seed)
        if not path.exists():
            raise ConfigError(f"the background store {directory} has no chunk of seed {seed} (fill it first)")
        chunk = read_chunk(path)
        _check_settings(chunk.settings, wanted, path)
        yield chunk


def parse_seeds(text: str) -> list[int]:
    """Chunk seeds from ``"N"`` or ``"N-M"`` (inclusive)."""
    first, _, last = str(text).partition("-")
    try:
        seeds = list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ConfigError(f"store seeds must be N or N-M, got {text!r}") from None
    if not seeds:
        raise ConfigError(f"the store seed range {text!r} is empty")
    return seeds


def check_independent(store_seeds: Iterable[int], sample_seeds: Iterable[int]) -> None:
    """Refuse store chunks generated from the seed of a sample they are compared with:
    they would be the very same events (:func:`samples.background_seed`)."""
    shared = sorted(set(store_seeds) & set(sample_seeds))
    if shared:
        raise ConfigError(f"store seeds {shared} are the seeds of the samples they would be compared with: the "
                          "same background events; choose other store seeds")

