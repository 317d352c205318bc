"""scripts/zprime_signal_efficiency.py: the run table and the window efficiency it measures ISR with."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from diffana.analyses.zprime_invisible import config as cfg
from diffana.analyses.zprime_invisible.samples import recoil_mass_squared_resolution
from diffana.analyses.zprime_invisible.selections import SELECTION_NAMES
from diffana.errors import ConfigError

SCRIPT = runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "zprime_signal_efficiency.py"))


def test_run_table_takes_each_selections_medians_by_range(tmp_path):
    masses = [1.0, 2.0, 4.0, 5.0, 7.0, 8.0]  # two per published range (M² 1, 4 | 16, 25 | 49, 64)
    rows = [{"selection": name, "mass_GeV": m, "signal_efficiency": (k + 1) * 0.01 * (i + 1), "expected_fb": 1.0,
             "converged": True} for k, name in enumerate(SELECTION_NAMES) for i, m in enumerate(masses)]
    (tmp_path / "limits.json").write_text(json.dumps({"seed": 1, "masses_GeV": masses, "rows": rows[::-1]}))
    table = SCRIPT["run_efficiencies"](tmp_path)
    assert table["punzi_net"]["signal_efficiency_median"] == pytest.approx(3 * 0.035)
    assert list(table["punzi_net"]["signal_efficiency_median_by_range"].values()) == pytest.approx(
        [3 * 0.015, 3 * 0.035, 3 * 0.055])
    with pytest.raises(ConfigError, match="no limits.json"):
        SCRIPT["run_efficiencies"](tmp_path / "missing")


def test_window_efficiency_counts_the_window_and_the_cut(monkeypatch):
    config = cfg.load_config("belle2_2019_2020")
    mass = 3.0
    half = 0.5 * config.templates.window_bins * float(recoil_mass_squared_resolution(mass))
    # six events of equal weight: two outside the window, one of the four inside fails (a)'s cut
    m2 = mass**2 + np.array([0.0, 0.5 * half, -0.9 * half, 0.1, 1.1 * half, -2.0 * half])
    tau = np.array([2.0, 2.0, 2.0, 0.5, 2.0, 2.0])
    sample = {"recoil_mass_squared": m2, "weight": np.full(6, 0.5),
              "recoil_pt_wrt_muon1_cm": tau, "recoil_pt_wrt_muon2_cm": tau + 1.0}
    passes = np.array([True, True, True, True, True, False])
    monkeypatch.setattr(SCRIPT["_features"], "preselection", lambda s, phi: passes)
    result = SCRIPT["window_efficiency"](sample, mass, config, cut=1.0)
    assert result.preselected_in_window == pytest.approx(4 / 6)
    assert result.after_cut == pytest.approx(3 / 6)
