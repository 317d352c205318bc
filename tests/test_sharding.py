"""Sharded equals unsharded: diffana.sharding on 4 CPU devices.

JAX fixes its device count when it is first imported, so the 4 devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``) live in a subprocess that
runs this file as a script (:func:`_checks`), computes every quantity both on one
device and sharded, and prints the comparisons as one JSON line; the tests read it.
One subprocess for all checks: JAX's start-up and the compilations are paid once.

Checked there:

- a training step (value and gradient of the mean −log Asimov significance of an
  MLP selection, hard histograms per mass window) with events split along "events"
  (1001 events: padded with zero-weight events to 1004), on a 2 × 2 mesh with
  the masses' fits split along "hypotheses" as well, and with diffana.windows'
  window-local histograms of the sorted events: equal to one device (dense) to 1e-10;
  the compiled events-sharded step holds 1/4 of the events per device and adds the
  histograms with an all-reduce;
- a bump hunt of 10 windows with the windows split over 4 devices: fits and limits
  equal to one device to 1e-10; the fits and limits are shard_map blocks of 3
  windows each (10 padded to 12);
- bad input: more event shards than events, a mesh larger than the device count.

Marked slow (minutes of compilation on 2 cores): the same training step with the
mean log expected limit as objective, the Z'→invisible ``scan_limits``, and two
processes joined by ``initialize_distributed`` (two "hosts" on this machine, gloo
collectives), each with half of the events, against one process with all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DEVICES = 4
TOLERANCE = 1e-10
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- in the subprocess
def _max_difference(a, b) -> float:
    """Largest |a − b| over every array leaf of two PyTrees (booleans as 0/1)."""
    import jax

    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
        lambda x, y: float(np.max(np.abs(np.asarray(x, float) - np.asarray(y, float)), initial=0.0)), a, b))
    return max(leaves)


def _training_toy(n_events: int = 1001, n_masses: int = 4):
    """Events (dict of (N,) columns: m GeV, x, weight, process 0 = signal, 1 =
    background), the masses' window edges (M, 7) GeV, and an MLP on (m, x)."""
    import jax
    import jax.numpy as jnp

    from diffana.selection import MLP, Standardisation

    rng = np.random.default_rng(3)
    process = (rng.uniform(size=n_events) < 0.3).astype(np.int32) ^ 1
    events = {"m": rng.uniform(1.0, 5.0, n_events),
              "x": np.where(process == 0, rng.normal(1.5, 1.0, n_events), rng.normal(0.0, 1.0, n_events)),
              "weight": np.where(process == 0, 0.2, 5.0), "process": process}
    masses = np.linspace(1.5, 4.5, n_masses)
    edges = masses[:, None] + np.linspace(-0.5, 0.5, 7)
    net = MLP(Standardisation.fit({k: jnp.asarray(events[k]) for k in ("m", "x")}, ["m", "x"]), hidden=(4, 4),
              key=jax.random.PRNGKey(0))
    return events, jnp.asarray(edges), net


def _histograms(net, events, edges):
    """(M, 2, bins) signal and background yields in each mass window (events)."""
    import jax

    from diffana import soft

    weights = net(events) * events["weight"]
    return jax.vmap(lambda e: soft.hard_histograms_by_process(events["m"], e, weights, events["process"], 2))(edges)


def _log_significance(histograms):
    """−log of the Asimov discovery significance (10% background uncertainty) of one
    window's (2, bins) yields: a closed-form objective, cheap to compile."""
    import jax.numpy as jnp

    from diffana import objectives

    signal, background = histograms[0], histograms[1] + objectives.YIELD_FLOOR
    return -jnp.log(objectives.asimov_significance(signal, background, 0.1 * background))


def _log_limit(histograms):
    """log of the median expected 90% CL limit on μ of one window's (2, bins) yields."""
    import jax.numpy as jnp

    from diffana import objectives
    from diffana.model import Model

    signal, background = histograms[0], histograms[1]
    spec = objectives.correlated_background_spec(signal, background, 1.05 * background, 0.95 * background)
    return jnp.log(objectives.expected_upper_limit(Model.from_spec(spec), cl=0.90))


def _training_checks(per_window=_log_significance) -> dict:
    import jax
    import jax.numpy as jnp

    from diffana import sharding, windows

    events, edges, net = _training_toy()

    def loss(net, events):
        return jnp.mean(jax.vmap(per_window)(_histograms(net, events, edges)))

    step = jax.jit(jax.value_and_grad(loss))
    reference = step(net, {k: jnp.asarray(v) for k, v in events.items()})

    mesh = sharding.device_mesh(events=DEVICES)
    sharded_events = sharding.shard_events(events, mesh)
    compiled = step.lower(net, sharded_events).compile()
    by_events = compiled(net, sharded_events)
    hlo = compiled.as_text()

    grid = sharding.device_mesh(events=2, hypotheses=2)

    def loss_on_grid(net, events):
        # the histograms from events split along "events" (GSPMD adds the partial
        # sums), then each "hypotheses" device fits its own masses
        values = sharding.map_shards(jax.vmap(per_window), grid)(_histograms(net, events, edges))
        return jnp.mean(values)

    on_grid = jax.jit(jax.value_and_grad(loss_on_grid))(net, sharding.shard_events(events, grid))

    def windowed_loss(net, sorted_events):
        # diffana.windows: cumulative sums over the events sorted by m (a scan
        # across the event shards), the same histograms as the dense ones
        weights = net(sorted_events) * sorted_events["weight"]
        histograms = windows.window_histograms(sorted_events["m"], weights, edges,
                                               category=sorted_events["process"], n_categories=2)
        return jnp.mean(jax.vmap(per_window)(histograms))

    sorted_events = sharding.shard_events(windows.sort_events(events, "m"), mesh)
    windowed = jax.jit(jax.value_and_grad(windowed_loss))(net, sorted_events)
    return {
        "windowed_difference": _max_difference(reference, windowed),
        "reference_value": float(reference[0]),
        "events_difference": _max_difference(reference, by_events),
        "grid_difference": _max_difference(reference, on_grid),
        "padded_events": int(sharded_events["m"].shape[0]),
        "padded_weight_sum": float(np.sum(np.asarray(sharded_events["weight"])[len(events["m"]):])),
        "events_per_device": sorted({int(s.data.shape[0]) for s in sharded_events["m"].addressable_shards}),
        "local_event_block_in_hlo": f"f64[{sharded_events['m'].shape[0] // DEVICES}]" in hlo,
        "all_reduce_in_hlo": "all-reduce" in hlo,
    }


def _bump_hunt_checks() -> dict:
    import equinox as eqx
    import jax
    from scipy.stats import norm

    from diffana import sharding, shapes
    from diffana.infer import bump_hunt as bh
    from diffana.model.parametric import sliding_windows

    edges = np.linspace(1.0, 2.0, 101)
    centres = 0.5 * (edges[1:] + edges[:-1])
    expected = 80.0 * np.exp(-(centres - 1.0) / 0.8) + 150.0 * np.diff(norm.cdf(edges, 1.5, 0.02))
    counts = np.random.default_rng(7).poisson(expected).astype(float)
    windows = sliding_windows(edges, counts, np.linspace(1.2, 1.8, 10), 24,
                              lambda m, lo, hi: shapes.Gaussian(m, 0.02 + 0.0 * m, lo, hi), background_degree=2)
    reference = bh.bump_hunt(windows.data, windows.models, cl=0.90)
    mesh = sharding.device_mesh(hypotheses=DEVICES)
    sharded = bh.bump_hunt(windows.data, windows.models, cl=0.90, mesh=mesh)
    # the lowered program (StableHLO, before XLA's partitioner: compiling it again
    # would double the test's cost; docs/devices.md has the compiled check)
    placed = sharding.shard_hypotheses((windows.data, windows.models), mesh)
    scan = eqx.filter_jit(lambda d, m: bh._bump_hunt(d, m, 0.90, bh._settings(None), mesh=mesh))
    lowered = scan.lower(*placed.stack).as_text()
    return {
        "converged": bool(np.all(np.asarray(reference.fits.converged) & np.asarray(reference.limits.converged))),
        "difference": _max_difference((reference.fits, reference.limits), (sharded.fits, sharded.limits)),
        "n_windows": int(sharded.limits.limit.shape[0]),
        "manual_blocks": lowered.count("sdy.manual_computation("),
        "local_windows_in_blocks": "tensor<3x24xf64>" in lowered,
    }


def _error_message(function) -> str:
    try:
        function()
    except ValueError as error:
        return str(error)
    return "no error"


def _bad_input_checks() -> dict:
    from diffana import sharding

    mesh = sharding.device_mesh(events=DEVICES)
    return {
        "more_shards_than_events": _error_message(
            lambda: sharding.shard_events({"m": np.arange(3.0), "weight": np.ones(3)}, mesh)),
        "no_weight_to_pad": _error_message(lambda: sharding.shard_events({"m": np.arange(5.0)}, mesh)),
        "mesh_too_large": _error_message(lambda: sharding.device_mesh(events=4, hypotheses=2)),
        "axis_too_large": _error_message(lambda: sharding.device_mesh(hypotheses=8)),
    }


def _scan_limits_checks() -> dict:
    from diffana import sharding
    from diffana.analyses.zprime_invisible import fit

    rng = np.random.default_rng(5)
    n_hypotheses, bins = 5, 8
    background = rng.uniform(20.0, 80.0, (n_hypotheses, bins))
    signal = np.tile([0.5, 2.0, 2.0, 0.5, 0.5, 2.0, 2.0, 0.5], (n_hypotheses, 1)) / 2
    templates = {"signal": signal, "signal_up": 0.9 * signal, "signal_down": 1.1 * signal, "background": background,
                 "background_mumu": 0.2 * background, "signal_efficiency": np.full(n_hypotheses, 0.03),
                 "background_shape": np.full((n_hypotheses, bins), 0.05),
                 "photon_veto": np.full((n_hypotheses, bins), 0.34), "sigma_ref": np.full(n_hypotheses, 2.0)}
    data = np.round(background * 1.05)
    reference = fit.scan_limits(templates, data, 0.01, 0.9, chunk_bins=2 * bins)
    settings = fit.ScanSettings(0.01, 0.9, 2 * bins, "grouped", sharding.device_mesh(hypotheses=DEVICES))
    sharded = fit.scan_limits_with(settings, templates, data)
    return {"converged": bool(np.all(reference[2])), "difference": _max_difference(reference, sharded)}


def _median_time(function, *args, repeats: int = 5) -> float:
    """Median wall time (s) of ``function(*args)`` after a first (compiling) call."""
    import statistics
    import time

    import jax

    jax.block_until_ready(function(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _timings() -> dict:
    """Step and scan times (s) on 1, 2 and 4 of the fake CPU devices (docs/devices.md;
    not a test: fake devices share the machine's cores)."""
    import jax
    import jax.numpy as jnp

    from diffana import sharding
    from diffana.infer import bump_hunt as bh
    from diffana.model.parametric import sliding_windows
    from diffana import shapes

    events, edges, net = _training_toy(n_events=400_000, n_masses=10)
    step = jax.jit(jax.value_and_grad(lambda n, e: jnp.mean(jax.vmap(_log_significance)(_histograms(n, e, edges)))))
    spectrum = np.linspace(1.0, 2.0, 101)
    counts = np.random.default_rng(7).poisson(80.0 * np.exp(-(spectrum[1:] - 1.0) / 0.8)).astype(float)
    windows = sliding_windows(spectrum, counts, np.linspace(1.2, 1.8, 2000), 24,
                              lambda m, lo, hi: shapes.Gaussian(m, 0.02 + 0.0 * m, lo, hi), background_degree=2)
    out = {"training_step_one_device": _median_time(step, net, {k: jnp.asarray(v) for k, v in events.items()}),
           "bump_hunt_one_device": _median_time(lambda: bh.bump_hunt(windows.data, windows.models))}
    for k in (1, 2, 4):
        devices = jax.devices()[:k]
        placed = sharding.shard_events(events, sharding.device_mesh(events=k, devices=devices))
        out[f"training_step_events_{k}"] = _median_time(step, net, placed)
        mesh = sharding.device_mesh(hypotheses=k, devices=devices)
        out[f"bump_hunt_hypotheses_{k}"] = _median_time(lambda: bh.bump_hunt(windows.data, windows.models, mesh=mesh))
    return out


CHECKS = {"timings": _timings, "training": _training_checks, "training_limit": lambda: _training_checks(_log_limit),
          "bump_hunt": _bump_hunt_checks, "bad_input": _bad_input_checks, "scan_limits": _scan_limits_checks}


def _checks(names) -> dict:
    import jax

    import diffana  # noqa: F401  (float64)

    assert jax.device_count() == DEVICES, jax.devices()
    return {name: CHECKS[name]() for name in names}


# --------------------------------------------------------------------------- the tests
def _run_checks(names: list[str], timeout: float) -> dict:
    """The named checks' results from a subprocess with 4 CPU devices."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, __file__, *names], env=env, capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


# every test reading ``results`` on one xdist worker (pyproject: --dist loadgroup), so
# the 4-device subprocess runs once (it ran once per worker: 48 + 42 s on CI's 2 cores)
pytestmark = pytest.mark.xdist_group("sharding_subprocess")


@pytest.fixture(scope="module")
def results():
    return _run_checks(["training", "bump_hunt", "bad_input"], timeout=600)


def test_training_step_with_events_sharded_equals_one_device(results):
    training = results["training"]
    assert np.isfinite(training["reference_value"])
    assert training["events_difference"] < TOLERANCE


def test_window_local_step_with_events_sharded_equals_the_dense_one(results):
    """diffana.windows' cumulative-sum histograms of sorted events split over 4
    devices (the zero-weight padding repeats the largest m, so stays sorted)."""
    assert results["training"]["windowed_difference"] < TOLERANCE


def test_training_step_on_an_events_by_hypotheses_grid_equals_one_device(results):
    assert results["training"]["grid_difference"] < TOLERANCE


def test_events_are_padded_with_zero_weight_and_split_evenly(results):
    training = results["training"]
    assert training["padded_events"] == 1004
    assert training["padded_weight_sum"] == 0.0
    assert training["events_per_device"] == [251]


def test_each_device_takes_its_quarter_of_the_events(results):
    """The compiled step works on 251-event blocks and sums the histograms across
    devices (not a replicated computation on all 1004 events)."""
    assert results["training"]["local_event_block_in_hlo"]
    assert results["training"]["all_reduce_in_hlo"]


def test_bump_hunt_with_windows_sharded_equals_one_device(results):
    bump = results["bump_hunt"]
    assert bump["converged"]
    assert bump["n_windows"] == 10
    assert bump["difference"] < TOLERANCE


def test_each_device_fits_only_its_windows(results):
    """The fits and the limits are two shard_map blocks, each over 3 windows (the
    10 windows padded to 12, over 4 devices)."""
    assert results["bump_hunt"]["manual_blocks"] == 2
    assert results["bump_hunt"]["local_windows_in_blocks"]


def test_more_shards_than_events_is_a_clear_error(results):
    message = results["bad_input"]["more_shards_than_events"]
    assert "3 events" in message and "4 event shards" in message


def test_padding_without_a_weight_is_a_clear_error(results):
    assert "weight" in results["bad_input"]["no_weight_to_pad"]


def test_mesh_larger_than_the_devices_is_a_clear_error(results):
    message = results["bad_input"]["mesh_too_large"]
    assert "8 devices" in message and "4 are available" in message
    assert "hypotheses=8" in results["bad_input"]["axis_too_large"]


def test_mesh_larger_than_one_device_in_process():
    import jax

    from diffana import sharding

    with pytest.raises(ValueError, match=f"events={jax.device_count() + 1} needs more devices"):
        sharding.device_mesh(events=jax.device_count() + 1)


@pytest.mark.slow
def test_training_step_of_the_expected_limit_sharded_equals_one_device():
    """The same with the mean log expected 90% CL limit (three compilations of the
    limit's gradient: minutes on 2 cores)."""
    training = _run_checks(["training_limit"], timeout=1200)["training_limit"]
    assert np.isfinite(training["reference_value"])
    assert training["events_difference"] < TOLERANCE
    assert training["grid_difference"] < TOLERANCE


@pytest.mark.slow
def test_scan_limits_with_hypotheses_sharded_equals_one_device():
    scan = _run_checks(["scan_limits"], timeout=900)["scan_limits"]
    assert scan["converged"]
    assert scan["difference"] < TOLERANCE


def _multihost_process(process_id: int, port: int) -> dict:
    """One of two processes of a two-host run on this machine (2 CPU devices each,
    gloo collectives): each holds half of the events; the value and gradient of
    the training step over the global 4-device mesh."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from diffana import sharding

    sharding.initialize_distributed(f"localhost:{port}", 2, process_id)
    import jax.numpy as jnp

    import diffana  # noqa: F401  (float64)

    events, edges, net = _training_toy(n_events=1000)
    own = {k: v[process_id * 500:(process_id + 1) * 500] for k, v in events.items()}
    placed = sharding.shard_events(own, sharding.device_mesh(events=4))
    step = jax.jit(jax.value_and_grad(lambda n, e: jnp.mean(jax.vmap(_log_significance)(_histograms(n, e, edges)))))
    value, grad = step(net, placed)
    reference = step(net, {k: jnp.asarray(v) for k, v in events.items()})  # every event, this process alone
    local = lambda tree: jax.tree_util.tree_map(lambda leaf: np.asarray(leaf.addressable_data(0)), tree)  # noqa: E731
    return {"devices": jax.device_count(), "processes": jax.process_count(),
            "difference": _max_difference(local((value, grad)), local(reference))}


@pytest.mark.slow
def test_two_processes_equal_one():
    """Two processes joined by initialize_distributed (as two hosts would be), each
    with its own half of the events, give the one-process value and gradient."""
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    runs = [subprocess.Popen([sys.executable, __file__, "multihost", str(i), str(port)], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr[-3000:]
        result = json.loads(stdout.strip().splitlines()[-1])
        assert (result["devices"], result["processes"]) == (4, 2)
        assert result["difference"] < TOLERANCE


if __name__ == "__main__":
    if sys.argv[1] == "multihost":
        print(json.dumps(_multihost_process(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        print(json.dumps(_checks(sys.argv[1:])))
