"""TOML configuration of the Z'→invisible analysis: loading and up-front validation.

A config has the tables ``[analysis]``, ``[samples]``, ``[templates]``,
``[systematics]``, ``[training]`` and an optional ``[quick]`` table whose sub-tables
override keys of the others for ``--quick``. Every key has a default (the shipped
79.7 fb⁻¹ config), so a user file only lists what it changes. :func:`load_config`
checks the *whole* config — unknown keys, types, ranges, mass range, ROOT files and
their branches — before anything long runs, and raises :class:`ConfigError` (one line
naming the key) on the first problem.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from diffana.analyses.zprime_invisible.names import (HYPOTHESIS_SPACINGS, REQUIRED_FEATURES, RESOLUTION_MODELS,
                                                     SELECTION_NAMES)
from diffana.analyses.zprime_invisible.wide_width import WideWidthSettings
from diffana.errors import ConfigError
from diffana.physics.generator import BACKGROUND_PROCESSES  # the processes [samples] may name

SHIPPED_CONFIGS = {
    "belle2_2019_2020": "belle2_2019_2020.toml",
    "belle2_2018_pilot": "belle2_2018_pilot.toml",
}
"""Names of the configs shipped with diffana (``--config NAME`` or a path)."""

MASS_RANGE = (0.01, 10.0)
"""GeV: Z' masses the signal generator and cross-section table cover."""


@dataclass(frozen=True)
class AnalysisConfig:
    """Luminosity (fb⁻¹), trigger opening (deg), mass scan (GeV) and confidence level.

    ``resolution``: the σ(M²_rec) curve that spaces the hypotheses and sets the M² bin
    width, one of ``names.RESOLUTION_MODELS`` (``"published"``: 582 hypotheses
    from 0.01 to 8.5 GeV as in PRL 130, 231801; ``"table"``: the PHYSICS.md table).
    ``scan_structure``: ``"grouped"`` (one compiled limit scan per θ-bin count, the
    padding bins dropped) or ``"padded"`` (one compiled scan for all, padding masked);
    ``scan_chunk_bins``: hypotheses × bins per call of a compiled scan."""

    luminosity: float = 79.7
    min_muon_delta_phi: float = 90.0
    mass_min: float = 0.01
    mass_max: float = 8.5
    mass_step: float = 1.0
    n_masses: int = 0
    cl: float = 0.90
    resolution: str = "published"
    scan_structure: str = "grouped"
    scan_chunk_bins: int = 640


@dataclass(frozen=True)
class SamplesConfig:
    """Where events come from: the built-in generator or ROOT files (backgrounds).

    ``background_events``: generated events per background process, unless
    ``process_events`` ({process: events}) overrides it for a process. ``bias``:
    importance-sampled generation into the preselected phase space with exact
    weights (:mod:`diffana.physics.bias`); ignored for ROOT input.
    ``signal_isr``: generate the signal with initial-state radiation
    (``generate(..., signal_isr=True)``, weighted by σ(s'), total kept at the Born σ),
    as the paper's signal has; on in ``belle2_2019_2020`` (since 2026-12-03), off here
    and in the pilot config. It lowers the efficiency in the fit window by a factor
    0.76–0.82 (tutorial §2).
    """

    source: str = "generator"
    background_events: int = 1_000_000
    process_events: dict = field(default_factory=dict)
    bias: bool = True
    signal_events_per_mass: int = 8000
    signal_isr: bool = False
    train_fraction: float = 0.5
    files: dict = field(default_factory=dict)
    tree: str = "events"
    branch_map: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TemplatesConfig:
    """2D template binning: M²_rec window (bins of one resolution) × θ_rec^CM (deg).

    θ bins per hypothesis: ``theta_bins_by_m2[i]`` equal-width bins for hypotheses with
    M² (GeV²) in [``theta_m2_edges[i-1]``, ``theta_m2_edges[i]``) (the first below the
    first edge, the last from the last edge up), padded with empty, masked bins to
    ``theta_bins`` = the largest count, so every hypothesis shares one template layout
    (the fit drops or masks the padding: ``analysis.scan_structure``). An empty
    ``theta_bins_by_m2`` gives every hypothesis ``theta_bins`` bins. The published
    analysis uses 1 to 5 θ bins, more at low M²; its M² edges are not published, so
    the shipped rule (5/4/3/2/1 below 1/9/25/50 GeV² and above) is ours."""

    window_bins: int = 20
    theta_bins: int = 5
    theta_min: float = 0.0
    theta_max: float = 180.0
    theta_bins_by_m2: tuple = (5, 4, 3, 2, 1)
    theta_m2_edges: tuple = (1.0, 9.0, 25.0, 50.0)


@dataclass(frozen=True)
class SystematicsConfig:
    """Relative systematic uncertainties (PHYSICS.md), by M²_rec range (GeV²).
    ``background_mc_statistics``: add each background bin's MC-statistical error
    √Σw² / B in quadrature to its ``background_shape`` uncertainty (Barlow–Beeston-lite:
    the bin's one Poisson-constrained shapesys parameter carries both)."""

    range_edges: tuple = (9.0, 36.0)
    signal_efficiency: tuple = (0.027, 0.065, 0.083)
    signal_shape: float = 0.10
    background_shape: tuple = (0.032, 0.086, 0.25)
    photon_veto_below: float = 0.34
    photon_veto_above: float = 0.05
    photon_veto_boundary: float = 1.0
    luminosity: float = 0.01
    background_mc_statistics: bool = True


@dataclass(frozen=True)
class TrainingConfig:
    """Training of the network selections (steps, learning rate, subsets) and the
    choice of each selection's hard cut. ``max_events``: the random background subset
    of the BCE loss; ``max_window_events``: the background events of the Punzi and
    limit losses, drawn from those in a training window (0: all of them);
    ``n_thresholds`` cut values tried on ``cut_masses`` hypotheses evenly spread over
    the scan (training half), keeping from all of the training signal down to
    ``cut_tightest_signal_fraction`` of it (geometric steps), then
    ``n_refine_thresholds`` more between the winner's neighbours (``cuts.scan_cut``),
    none so tight that a hypothesis of the scan keeps fewer than
    ``cut_min_signal_events`` training signal MC events in its window.
    ``cut_guard_spared_fraction``: the share of the scan's hypotheses (rounded up) that
    would hold the cut back most and that the guard lets go (``cuts.spared_hypotheses``).
    ``cut_validation_fraction``: the share of the training half held back from the
    networks to choose the cut on (``cuts.split_for_cut_choice``; 0: the cut is chosen
    on the networks' own training events).
    ``limit_cut`` / ``limit_temperature``: (d) weights events with the soft cut
    sigmoid((logit − c)/T), c at (b)'s chosen cut (``"bce"``) or 0 (``"none"``); T in
    logit units. ``punzi_cut`` / ``punzi_temperature``: the same for (c)'s Punzi loss
    (``"none"`` with T = 0.1: the hard-like cut at logit 0 of ``selections.PUNZI_TEMPERATURE``).
    ``cut_region_masses``: masses (GeV, increasing) that split the scan into regions with
    a cut of their own per selection, each chosen on ⌈``cut_masses``/R⌉ of the region's
    hypotheses with the guard over the region's hypotheses, applied by the event's M²_rec
    (``cuts.RegionalCut``); empty (the default): one cut for all masses, as Punzi-net's paper.
    ``hypothesis_spacing``: the ``n_masses`` training hypotheses are
    spread evenly in scan index (``"scan"``; crowded at high mass, where the scan is
    finest) or in mass (``"mass"``); the ``cut_masses`` always evenly in scan index,
    like the summary's mean over the scan."""

    n_masses: int = 8
    max_events: int = 20000
    max_window_events: int = 0
    hidden: tuple = (8, 4)
    bce_steps: int = 300
    punzi_steps: int = 600
    limit_steps: int = 150
    limit_cut: str = "bce"
    limit_temperature: float = 0.25
    punzi_cut: str = "none"
    punzi_temperature: float = 0.1
    learning_rate: float = 0.01
    punzi_window: float = 2.0
    n_thresholds: int = 8
    n_refine_thresholds: int = 6
    cut_tightest_signal_fraction: float = 0.02
    cut_min_signal_events: int = 10
    cut_guard_spared_fraction: float = 0.05
    cut_validation_fraction: float = 0.0
    cut_masses: int = 16
    cut_region_masses: tuple = ()
    hypothesis_spacing: str = "scan"


@dataclass(frozen=True)
class WideWidthConfig:
    """The non-negligible-width benchmark (Γ_Z' = relative_width·M_Z'), 1D fits in
    enlarged windows: see :mod:`diffana.analyses.zprime_invisible.wide_width`."""

    enabled: bool = True
    relative_width: float = 0.1
    window_bins: int = 20
    half_width_resolutions: float = 10.0
    half_width_widths: float = 3.0
    selection: str = "end_to_end"


@dataclass(frozen=True)
class Config:
    """The whole analysis configuration (see the module docstring)."""

    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    templates: TemplatesConfig = field(default_factory=TemplatesConfig)
    systematics: SystematicsConfig = field(default_factory=SystematicsConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    wide_width: WideWidthConfig = field(default_factory=WideWidthConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable) of every setting."""
        return dataclasses.asdict(self)


_SECTIONS = {
    "analysis": AnalysisConfig,
    "samples": SamplesConfig,
    "templates": TemplatesConfig,
    "systematics": SystematicsConfig,
    "training": TrainingConfig,
    "wide_width": WideWidthConfig,
}


def _convert(section: str, name: str, value: Any, default: Any, where: str):
    key = f"{where}: [{section}] {name}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{key} must be a list of numbers, got {value!r}")
        return tuple(value)
    if name == "process_events":
        if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
            raise ConfigError(f"{key} must be a table of integers (events per process), got {value!r}")
        return dict(value)
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{key} must be a table of strings, got {value!r}")
        return dict(value)
    raise AssertionError(f"no converter for {key}")  # pragma: no cover


def _section(name: str, cls, table: Any, where: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{name}] must be a table, got {table!r}")
    defaults = cls()
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in [{name}]; known keys: {sorted(known)}")
    values = {k: _convert(name, k, v, getattr(defaults, k), where) for k, v in table.items()}
    return dataclasses.replace(defaults, **values)


def _merge(base: dict, overrides: dict, where: str) -> dict:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for name, table in overrides.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{where}: unknown table [quick.{name}]; known: {sorted(_SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [quick.{name}] must be a table")
        merged.setdefault(name, {}).update(table)
    return merged


def resolve_config_path(path_or_name: str | Path | None) -> Path:
    """A config file path: ``None`` → the shipped 79.7 fb⁻¹ config, a shipped name
    (:data:`SHIPPED_CONFIGS`) or a path to a TOML file."""
    if path_or_name is None:
        path_or_name = "belle2_2019_2020"
    if str(path_or_name) in SHIPPED_CONFIGS:
        return Path(str(resources.files(__package__) / "configs" / SHIPPED_CONFIGS[str(path_or_name)]))
    path = Path(path_or_name)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found (shipped configs: {sorted(SHIPPED_CONFIGS)})")
    return path


def parse_overrides(settings) -> dict:
    """Command-line overrides ``["training.n_masses=24", 'training.hypothesis_spacing="mass"']``
    → ``{"training": {"n_masses": 24, "hypothesis_spacing": "mass"}}`` for
    :func:`load_config` (values in TOML syntax, so strings keep their quotes).
    Raises :class:`ConfigError` naming the setting that is not ``SECTION.KEY=VALUE``."""
    overrides: dict = {}
    for setting in settings:
        path, _, value = setting.partition("=")
        section, _, key = path.partition(".")
        if not (section and key and value):
            raise ConfigError(f"override {setting!r}: expected SECTION.KEY=VALUE")
        try:
            overrides.setdefault(section, {})[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"override {setting!r}: {value!r} is not a TOML value "
                              "(quote strings: training.hypothesis_spacing='\"mass\"')") from None
    return overrides


def config_from_options(args, extra_settings=()) -> Config:
    """:func:`load_config` from the options of ``diffana.cli.zprime.add_config_options``
    (``args``: ``config``, ``quick``, ``set``),
    with ``extra_settings`` (more ``SECTION.KEY=VALUE`` strings) applied after
    ``--set``. Raises :class:`ConfigError`."""
    overrides = parse_overrides([*args.set, *extra_settings])
    return load_config(args.config, quick=args.quick, overrides=overrides or None)


def load_config(path_or_name: str | Path | None = None, *, quick: bool = False, overrides: dict | None = None) -> Config:
    """Read, merge (``[quick]`` when ``quick``, then ``overrides``) and validate a config.

    ``overrides``: ``{table: {key: value}}`` applied last (tests, scripting). Raises
    :class:`ConfigError` naming the file and key on any problem, including missing
    ROOT files or branches, so the run fails before any long computation.
    """
    path = resolve_config_path(path_or_name)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{where}: not valid TOML ({error})") from None
    unknown = sorted(set(raw) - set(_SECTIONS) - {"quick"})
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {unknown}; known: {sorted([*_SECTIONS, 'quick'])}")
    quick_table = raw.pop("quick", {})
    if not isinstance(quick_table, dict):
        raise ConfigError(f"{where}: [quick] must be a table")
    merged_quick = _merge(raw, quick_table, where)  # validated even without --quick
    if quick:
        raw = merged_quick
    if overrides:
        raw = _merge(raw, overrides, f"{where} (overrides)")
    sections = {name: _section(name, cls, raw.get(name, {}), where) for name, cls in _SECTIONS.items()}
    for name, cls in _SECTIONS.items():  # the [quick] values must be valid too
        _section(name, cls, merged_quick.get(name, {}), f"{where} [quick]")
    config = Config(**sections, source=where)
    validate(config, base_dir=path.parent)
    return config


def _require(condition: bool, message: str):
    if not condition:
        raise ConfigError(message)


def validate(config: Config, base_dir: Path | None = None) -> None:
    """Check ranges and cross-key consistency; open ROOT files and check branches."""
    w = config.source
    a, s, t, y, tr = config.analysis, config.samples, config.templates, config.systematics, config.training
    _require(a.luminosity > 0, f"{w}: [analysis] luminosity must be positive (fb^-1), got {a.luminosity}")
    for key in ("mass_min", "mass_max"):
        m = getattr(a, key)
        _require(
            MASS_RANGE[0] <= m <= MASS_RANGE[1],
            f"{w}: [analysis] {key} = {m} GeV is outside the range {MASS_RANGE[0]}-{MASS_RANGE[1]} GeV",
        )
    _require(a.mass_min < a.mass_max, f"{w}: [analysis] mass_min ({a.mass_min}) must be below mass_max ({a.mass_max})")
    _require(a.mass_step > 0, f"{w}: [analysis] mass_step must be positive")
    _require(a.n_masses >= 0 and a.n_masses != 1, f"{w}: [analysis] n_masses must be 0 (all) or >= 2")
    _require(0 < a.cl < 1, f"{w}: [analysis] cl must lie in (0, 1), got {a.cl}")
    _require(a.scan_chunk_bins >= 1, f"{w}: [analysis] scan_chunk_bins must be >= 1")
    _require(a.scan_structure in ("grouped", "padded"),
             f"{w}: [analysis] scan_structure must be 'grouped' or 'padded', got {a.scan_structure!r}")
    _require(a.resolution in RESOLUTION_MODELS,
             f"{w}: [analysis] resolution must be one of {list(RESOLUTION_MODELS)}, got {a.resolution!r}")
    _require(0 <= a.min_muon_delta_phi < 180, f"{w}: [analysis] min_muon_delta_phi must be in [0, 180) deg")
    _require(s.source in ("generator", "root"), f"{w}: [samples] source must be 'generator' or 'root', got {s.source!r}")
    _require(s.background_events >= 100, f"{w}: [samples] background_events must be >= 100")
    unknown_processes = sorted(set(s.process_events) - set(BACKGROUND_PROCESSES))
    _require(not unknown_processes, f"{w}: [samples] process_events: unknown process(es) {unknown_processes}; "
             f"known: {list(BACKGROUND_PROCESSES)}")
    for process, events in s.process_events.items():
        _require(events >= 100, f"{w}: [samples] process_events.{process} must be >= 100, got {events}")
    _require(s.signal_events_per_mass >= 100, f"{w}: [samples] signal_events_per_mass must be >= 100")
    _require(0 < s.train_fraction < 1, f"{w}: [samples] train_fraction must lie in (0, 1)")
    _require(t.window_bins >= 4, f"{w}: [templates] window_bins must be >= 4")
    _require(1 <= t.theta_bins <= 10, f"{w}: [templates] theta_bins must be 1-10")
    _require(0 <= t.theta_min < t.theta_max <= 180, f"{w}: [templates] need 0 <= theta_min < theta_max <= 180 deg")
    _validate_theta_rule(t, w)
    _require(len(y.range_edges) == 2 and y.range_edges[0] < y.range_edges[1],
             f"{w}: [systematics] range_edges must be two increasing M2 values (GeV^2)")
    for key in ("signal_efficiency", "background_shape"):
        values = getattr(y, key)
        _require(len(values) == 3 and all(0 <= v < 1 for v in values),
                 f"{w}: [systematics] {key} must list 3 relative uncertainties in [0, 1)")
    for key in ("signal_shape", "photon_veto_below", "photon_veto_above", "luminosity"):
        _require(0 <= getattr(y, key) < 1, f"{w}: [systematics] {key} must lie in [0, 1)")
    _require(tr.n_masses >= 1, f"{w}: [training] n_masses must be >= 1")
    _require(tr.max_events >= 100, f"{w}: [training] max_events must be >= 100")
    _require(tr.max_window_events == 0 or tr.max_window_events >= 100,
             f"{w}: [training] max_window_events must be 0 (all) or >= 100")
    _require(len(tr.hidden) >= 1 and all(int(h) == h and h >= 1 for h in tr.hidden),
             f"{w}: [training] hidden must list positive layer widths")
    for key in ("bce_steps", "punzi_steps", "limit_steps"):
        _require(getattr(tr, key) >= 0, f"{w}: [training] {key} must be >= 0")
    _require(tr.learning_rate > 0, f"{w}: [training] learning_rate must be positive")
    _require(tr.limit_cut in ("none", "bce"), f"{w}: [training] limit_cut must be \"none\" or \"bce\"")
    _require(tr.limit_temperature > 0, f"{w}: [training] limit_temperature must be positive")
    _require(tr.punzi_cut in ("none", "bce"), f"{w}: [training] punzi_cut must be \"none\" or \"bce\"")
    _require(tr.punzi_temperature > 0, f"{w}: [training] punzi_temperature must be positive")
    _require(tr.punzi_window > 0, f"{w}: [training] punzi_window must be positive")
    _require(tr.n_thresholds >= 2, f"{w}: [training] n_thresholds must be >= 2")
    _require(tr.n_refine_thresholds >= 0, f"{w}: [training] n_refine_thresholds must be >= 0")
    _require(0 < tr.cut_tightest_signal_fraction < 1,
             f"{w}: [training] cut_tightest_signal_fraction must lie in (0, 1)")
    _require(tr.cut_min_signal_events >= 0, f"{w}: [training] cut_min_signal_events must be >= 0")
    _require(0 <= tr.cut_guard_spared_fraction < 1, f"{w}: [training] cut_guard_spared_fraction must lie in [0, 1)")
    _require(0 <= tr.cut_validation_fraction < 1,
             f"{w}: [training] cut_validation_fraction must lie in [0, 1)")
    _require(tr.cut_masses >= 1, f"{w}: [training] cut_masses must be >= 1")
    edges = tr.cut_region_masses
    _require(all(a.mass_min < m < a.mass_max for m in edges) and all(b > m for m, b in zip(edges, edges[1:])),
             f"{w}: [training] cut_region_masses must increase strictly and lie between mass_min ({a.mass_min}) "
             f"and mass_max ({a.mass_max}) GeV, got {list(edges)}")
    _require(tr.hypothesis_spacing in HYPOTHESIS_SPACINGS, f"{w}: [training] hypothesis_spacing must be one of "
             f"{list(HYPOTHESIS_SPACINGS)}, got {tr.hypothesis_spacing!r}")
    _validate_wide_width(config.wide_width, w)
    if s.source == "root":
        _validate_root_files(config, base_dir or Path("."))
    elif s.files:
        raise ConfigError(f"{w}: [samples] files given but source = 'generator' (set source = 'root')")


def _validate_wide_width(ww: WideWidthConfig, w: str) -> None:
    _require(ww.selection in SELECTION_NAMES,
             f"{w}: [wide_width] selection must be one of {list(SELECTION_NAMES)}, got {ww.selection!r}")
    try:
        WideWidthSettings(ww.relative_width, ww.window_bins, ww.half_width_resolutions, ww.half_width_widths)
    except ValueError as error:
        raise ConfigError(f"{w}: [wide_width] {error}") from None


def _validate_theta_rule(t: TemplatesConfig, w: str) -> None:
    """The M²-dependent θ binning: counts are integers in 1-10, one more count than edges,
    edges (GeV²) strictly increasing."""
    counts, edges = t.theta_bins_by_m2, t.theta_m2_edges
    if not counts:
        _require(not edges, f"{w}: [templates] theta_m2_edges given without theta_bins_by_m2")
        return
    _require(all(int(n) == n and 1 <= n <= 10 for n in counts),
             f"{w}: [templates] theta_bins_by_m2 must list integers 1-10, got {list(counts)}")
    _require(len(edges) == len(counts) - 1,
             f"{w}: [templates] theta_m2_edges needs {len(counts) - 1} value(s) (one fewer than "
             f"theta_bins_by_m2), got {len(edges)}")
    _require(all(b > a for a, b in zip(edges, edges[1:])),
             f"{w}: [templates] theta_m2_edges must increase strictly (GeV^2), got {list(edges)}")
    _require(t.theta_bins == max(counts),
             f"{w}: [templates] theta_bins ({t.theta_bins}) must equal the largest of theta_bins_by_m2 "
             f"({int(max(counts))}): it is the padded width of every hypothesis (or set theta_bins_by_m2 = [])")


def root_file_paths(config: Config, base_dir: Path) -> dict[str, Path]:
    """Background process → ROOT file path (relative paths from the config's folder)."""
    return {p: (Path(f) if Path(f).is_absolute() else base_dir / f) for p, f in config.samples.files.items()}


def _validate_root_files(config: Config, base_dir: Path) -> None:
    w = config.source
    files = config.samples.files
    unknown = sorted(set(files) - set(BACKGROUND_PROCESSES))
    _require(not unknown, f"{w}: [samples] files: unknown process(es) {unknown}; known: {list(BACKGROUND_PROCESSES)}")
    missing = [p for p in BACKGROUND_PROCESSES if p not in files]
    _require(not missing, f"{w}: [samples] files: no ROOT file for {missing}")
    import uproot

    for process, path in root_file_paths(config, base_dir).items():
        _require(path.is_file(), f"{w}: [samples] files.{process}: ROOT file {str(path)!r} not found")
        try:
            with uproot.open(path) as handle:
                if config.samples.tree not in handle:
                    raise ConfigError(f"{w}: [samples] tree {config.samples.tree!r} not in {str(path)!r} (has {sorted(handle.keys())})")
                branches = set(handle[config.samples.tree].keys())
        except ConfigError:
            raise
        except Exception as error:  # noqa: BLE001 - any unreadable file is a config problem
            raise ConfigError(f"{w}: [samples] files.{process}: cannot read {str(path)!r} ({error})") from None
        mapping = config.samples.branch_map
        absent = sorted(b for b in mapping if b not in branches)
        _require(not absent, f"{w}: [samples] branch_map: branch(es) {absent} not in {str(path)!r} ({process})")
        # as diffana.io.read_sample: with a branch map only the mapped branches are read
        provided = {(v[0] if isinstance(v, (list, tuple)) else v) for v in mapping.values()} if mapping else branches
        lacking = sorted(set(REQUIRED_FEATURES) - set(provided))
        _require(not lacking, f"{w}: [samples] {str(path)!r} ({process}) lacks feature(s) {lacking}"
                 + (" after the branch_map (only mapped branches are read)" if mapping else ""))

