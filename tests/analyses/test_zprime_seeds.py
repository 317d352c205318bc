"""The over-seed, per-mass-range comparison of the four Z'→invisible selections."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

from diffana.analyses.zprime_invisible.names import SELECTION_NAMES
from diffana.analyses.zprime_invisible.seeds import DEFAULT_RANGES, MassRange, compare_seeds, markdown_table, read_run
from diffana.errors import ConfigError

MASSES = [0.5, 2.0, 4.0, 7.0]


def write_run(folder: Path, seed: int, limits: dict, no_signal=()) -> Path:
    """A minimal limits.json as ``outputs.write_tables`` writes it; ``limits[name]`` are
    the median expected σ_UL (fb) per mass, ``no_signal`` (name, mass index) pairs whose
    cut kept no signal."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, values in limits.items():
        for k, (mass, value) in enumerate(zip(MASSES, values)):
            efficiency = 0.0 if (name, k) in no_signal else 0.05
            rows.append({"selection": name, "mass_GeV": mass, "expected_fb": value, "converged": True,
                         "signal_efficiency": efficiency})
    rows.reverse()  # read_run must not rely on the row order
    (folder / "limits.json").write_text(json.dumps({"seed": seed, "masses_GeV": MASSES, "rows": rows}))
    return folder


def limits_scaled(base: float, factors) -> dict:
    """Each selection's limits: ``base`` × its factor at every mass, times the mass index + 1."""
    return {name: [base * f * (k + 1) for k in range(len(MASSES))] for name, f in zip(SELECTION_NAMES, factors)}


def test_read_run_orders_by_mass_and_marks_missing_limits(tmp_path):
    limits = limits_scaled(10.0, (1.0, 0.9, 0.8, 0.2))
    run = read_run(write_run(tmp_path / "r", 3, limits, no_signal={("mlp_bce", 1)}))
    assert run.seed == 3
    np.testing.assert_allclose(run.masses, MASSES)
    np.testing.assert_allclose(run.expected_fb["end_to_end"], limits["end_to_end"])
    assert run.has_limit["mlp_bce"].tolist() == [True, False, True, True]
    assert run.common().tolist() == [True, False, True, True]


def test_per_range_means_exclude_masses_any_selection_lacks(tmp_path):
    limits = limits_scaled(10.0, (1.0, 0.9, 0.8, 0.2))
    limits["end_to_end"][1] = 1e-3  # (d)'s limit at 2 GeV, where (b) keeps no signal: must not count
    runs = [read_run(write_run(tmp_path / "r1", 1, limits, no_signal={("mlp_bce", 1)}))]
    whole, below1, middle, above6 = compare_seeds(runs)
    assert whole.compared == (3,) and below1.compared == (1,) and middle.compared == (1,) and above6.compared == (1,)
    # whole scan: masses 0.5, 4, 7 → indices 0, 2, 3 → factors 1, 3, 4
    expected_d = 10.0 * 0.2 * (1 * 3 * 4) ** (1 / 3)
    assert whole.limits["end_to_end"].per_seed[0] == pytest.approx(expected_d)
    assert middle.limits["end_to_end"].per_seed[0] == pytest.approx(10.0 * 0.2 * 3)
    assert whole.paired["mlp_bce"].per_seed[0] == pytest.approx(0.2 / 0.9)


def test_over_seed_mean_spread_and_verdict(tmp_path):
    # (d) fluctuates by ×/÷ 1.1 over the seeds; (b) by more, (c) is only 5% worse than (d)
    d_factors, b_factors = (0.2, 0.22, 0.2 / 1.1), (0.9, 1.2, 0.7)
    runs = []
    for seed, (d, b) in enumerate(zip(d_factors, b_factors), start=1):
        limits = limits_scaled(10.0, (1.0, b, d * 1.05, d))
        runs.append(read_run(write_run(tmp_path / f"r{seed}", seed, limits)))
    whole = compare_seeds(runs)[0]
    d = whole.limits["end_to_end"]
    assert d.mean == pytest.approx(np.exp(np.mean(np.log(d.per_seed))))
    assert d.spread == pytest.approx(np.exp(np.std(np.log(d.per_seed), ddof=1)))
    np.testing.assert_allclose(whole.paired["mlp_bce"].per_seed, np.array(d_factors) / np.array(b_factors))
    assert whole.beats_beyond_spread("mlp_bce")
    # 0.95 in every seed, but the seed spread of (d) alone (×/÷ 1.1) is larger than 5%
    np.testing.assert_allclose(whole.paired["punzi_net"].per_seed, 1 / 1.05)
    assert not whole.beats_beyond_spread("punzi_net")
    table = markdown_table(whole, [1, 2, 3])
    assert "| (b) MLP, BCE |" in table and table.count("| yes |") == 2  # (a) and (b)


def test_a_range_with_no_mass_reports_nan_not_a_verdict(tmp_path):
    runs = [read_run(write_run(tmp_path / f"r{s}", s, limits_scaled(10.0, (1.0, 0.9, 0.8, 0.2)))) for s in (1, 2)]
    (empty,) = compare_seeds(runs, ranges=(MassRange("above the scan", 9.0, 10.0),))
    assert empty.compared == (0, 0)
    assert np.isnan(empty.limits["end_to_end"].mean)
    assert not empty.beats_beyond_spread("mlp_bce")
    assert "–" in markdown_table(empty, [1, 2])


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ConfigError, match="no limits.json"):
        read_run(tmp_path / "missing")
    run = read_run(write_run(tmp_path / "r", 1, limits_scaled(1.0, (1, 1, 1, 1))))
    with pytest.raises(ConfigError, match="repeat a seed"):
        compare_seeds([run, run])
    with pytest.raises(ConfigError, match="at least one run"):
        compare_seeds([])


def test_script_prints_every_range_and_fails_cleanly(tmp_path, capsys):
    script = Path(__file__).resolve().parents[2] / "scripts" / "zprime_seed_table.py"
    main = runpy.run_path(str(script))["main"]
    folders = [str(write_run(tmp_path / f"r{s}", s, limits_scaled(10.0 + s, (1.0, 0.9, 0.8, 0.2)))) for s in (1, 2)]
    assert main(folders + ["--json", str(tmp_path / "out.json")]) == 0
    printed = capsys.readouterr().out
    assert all(f"**{r.label}**" in printed for r in DEFAULT_RANGES)
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["seeds"] == [1, 2] and len(saved["ranges"]) == len(DEFAULT_RANGES)
    assert saved["ranges"][0]["mass_range"]["high"] is None  # the open end, as strict JSON
    assert saved["ranges"][0]["beaten_beyond_spread"]["cut_based"] is True
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no limits.json" in capsys.readouterr().err
