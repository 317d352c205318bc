"""Shared test configuration.

Compiled JAX functions are expensive on CI's two cores: share them through
session-scoped fixtures rather than recompiling per test.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# Commands called in-process (diffana.cli.main) would turn on the persistent
# compilation cache in ~/.cache for the rest of the worker; tests that check the
# cache give it a folder of their own.
os.environ.setdefault("DIFFANA_JAX_CACHE", "off")
# Compilation dominates this suite's time on CI's two cores. XLA:CPU's classic code
# generator compiles diffana's programs ~1.3-1.7x faster than its fusion emitters
# (the default) and runs them as fast (docs/published_likelihoods.md; a compile-heavy
# subset of tests/infer and tests/model: 131 s -> 90 s); the numbers agree to
# rounding. The CLI's stored programs use the same setting (diffana.programs.FAST_RUN).
# Set before JAX starts its backend, which reads XLA_FLAGS once; an explicit
# --xla_cpu_use_fusion_emitters in the environment wins.
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_fusion_emitters=false").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


def atlas_erjr_dir() -> str:
    """The published ATLAS likelihood of ../shared/data/atlas_erjr: ``$DIFFANA_ATLAS_ERJR``,
    else the shared/ folder beside the repository (where CI puts it), else the
    developers' /work/shared. Tests that need it skip where none exists."""
    from pathlib import Path

    candidates = [os.environ.get("DIFFANA_ATLAS_ERJR", ""),
                  Path(__file__).resolve().parents[2] / "shared" / "data" / "atlas_erjr",
                  "/work/shared/data/atlas_erjr"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "bkg_only.json").exists():
            return str(candidate)
    return "/work/shared/data/atlas_erjr"


def zprime_config_error(tmp_path, text: str) -> str:
    """The one-line ConfigError message of a Z'→invisible config file holding ``text``
    (fails the test if the config loads)."""
    import pytest

    from diffana.analyses.zprime_invisible import config as cfg

    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError) as error:
        cfg.load_config(path)
    return str(error.value)


# A small workspace (3 bins, 5 parameters) where every fitter converges; the
# command-line tests (cli/) write it to a file.
SMALL_WORKSPACE = {
    "channels": [
        {"name": "signal_region", "samples": [
            {"name": "signal", "data": [4.0, 9.0, 3.0],
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None},
                           {"name": "signal_efficiency", "type": "normsys",
                            "data": {"hi": 1.08, "lo": 0.9}}]},
            {"name": "background", "data": [40.0, 35.0, 30.0],
             "modifiers": [{"name": "background_uncorrelated", "type": "shapesys",
                            "data": [3.0, 3.0, 2.5]}]},
        ]}
    ],
    "observations": [{"name": "signal_region", "data": [42.0, 38.0, 29.0]}],
    "measurements": [
        {"name": "nominal", "config": {"poi": "mu", "parameters": []}},
        {"name": "narrow_poi", "config": {"poi": "mu", "parameters": [
            {"name": "mu", "bounds": [[0.0, 3.0]]}]}},
    ],
    "version": "1.0.0",
}
