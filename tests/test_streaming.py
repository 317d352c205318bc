"""Out-of-core exact gradients (diffana.streaming): streamed value and gradient equal the
in-memory ones, padding is a no-op, ROOT round trip, train() on a ChunkedSource, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import diffana  # noqa: F401  (float64)
from diffana import io
from diffana.errors import ConfigError, SampleIOError
from diffana.events import Events
from diffana.objectives import asimov_significance
from diffana.selection import MLP, Standardisation
from diffana.soft import process_histograms
from diffana.streaming import (ChunkedSource, StreamedLoss, bytes_per_event,
                               streamed_value_and_grad)
from diffana.train import load_checkpoint, train

CHUNK = 64  # events per chunk: every source below shares the compiled per-chunk functions
EDGES = jnp.linspace(0.0, 4.0, 6)  # bins of the feature "x"
FEATURES = ("x", "y")


def network_inputs(chunk):
    """log x (x >= 1 for real events) and y: a zero-valued padding event would give
    log 0 = -inf, and a NaN gradient (0 x inf) even at weight 0; a copied one cannot."""
    return {"log_x": jnp.log(chunk.features["x"]), "y": chunk.features["y"]}


def histograms(net, chunk):
    """(2, 5) yields of signal and background in bins of 2 log x, weighted by the network."""
    return process_histograms(chunk, 2.0 * jnp.log(chunk.features["x"]), EDGES,
                              selection_weight=net(network_inputs(chunk)))


def objective(net, yields):
    """Minus the Asimov significance of the binned selection (1 event background floor)."""
    return -asimov_significance(yields[0], yields[1] + 1.0, 0.1 * yields[1])


LOSS = StreamedLoss(histograms, objective)


def in_memory_loss(net, events):
    return objective(net, histograms(net, events))


def relative_difference(a, b):
    a, b = np.concatenate([np.ravel(x) for x in a]), np.concatenate([np.ravel(x) for x in b])
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def make_sample(n_signal=150, n_background=350, seed=0):
    """dict of numpy columns: x >= 1, y, weight, process (0 signal, 1 background)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.exponential(3.0, n_signal), rng.exponential(1.0, n_background)]) + 1.0
    y = np.concatenate([rng.normal(1.0, 1.0, n_signal), rng.normal(0.0, 1.0, n_background)])
    weight = np.concatenate([np.full(n_signal, 0.05), rng.uniform(0.5, 1.5, n_background)])
    process = np.repeat(np.array([0, 1], dtype=np.int32), [n_signal, n_background])
    order = rng.permutation(len(x))  # mix the processes across chunks
    return {"x": x[order], "y": y[order], "weight": weight[order], "process": process[order]}


def as_events(sample):
    return Events({k: jnp.asarray(sample[k]) for k in FEATURES}, jnp.asarray(sample["weight"]),
                  jnp.asarray(sample["process"]), ("signal", "background"))


@pytest.fixture(scope="module")
def problem():
    sample = make_sample()  # 500 events: 7 full chunks and one of 52 (padded by 12)
    events = as_events(sample)
    net = MLP(Standardisation.fit(network_inputs(events), ("log_x", "y")), hidden=(6,),
              activation=jnp.tanh,
key=jax.random.PRNGKey(1))
    return sample, events, net


@pytest.fixture(scope="module")
def in_memory(problem):
    _, events, net = problem
    return eqx.filter_jit(eqx.filter_value_and_grad(in_memory_loss))(net, events)


def test_streamed_value_and_gradient_equal_in_memory(problem, in_memory):
    sample, _, net = problem
    source = ChunkedSource.from_arrays(sample, CHUNK, features=FEATURES,
                                       process_names=("signal", "background"))
    assert source.n_chunks == 8
    value, grads = streamed_value_and_grad(histograms, objective, net, source)
    reference_value, reference_grads = in_memory
    assert float(value) == pytest.approx(float(reference_value), rel=1e-10)
    assert relative_difference(leaves(grads), leaves(reference_grads)) < 1e-10
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(reference_grads)
    # an objective with a ``step`` keyword receives the step (annealing schedules)
    scaled, scaled_grads = streamed_value_and_grad(
        histograms, lambda n, h, step: step * objective(n, h), net, source, step=3)
    assert float(scaled) == pytest.approx(3 * float(reference_value), rel=1e-10)
    assert relative_difference(leaves(scaled_grads), [3 * g for g in leaves(reference_grads)]) < 1e-10


def test_padding_is_an_exact_no_op(problem):
    sample, _, net = problem
    chunks = list(ChunkedSource.from_arrays(sample, CHUNK, features=FEATURES,
                                            process_names=("signal", "background")))
    last = chunks[-1]
    real = 500 - 7 * CHUNK
    assert last.n_events == CHUNK
    np.testing.assert_array_equal(np.asarray(last.weight[real:]), 0.0)
    # padding copies a real event: every value stays in the feature's domain (x >= 1)
    assert np.all(np.asarray(last.features["x"]) >= 1.0)
    unpadded = as_events({k: v[7 * CHUNK:] for k, v in sample.items()})
    jitted = eqx.filter_jit(histograms)
    np.testing.assert_allclose(jitted(net, last), jitted(net, unpadded), rtol=1e-14, atol=0)
    # the padding's own contribution to value and gradient is exactly zero
    padding_only = eqx.tree_at(lambda e: e.weight, last, last.weight.at[:real].set(0.0))
    value, grads = eqx.filter_jit(eqx.filter_value_and_grad(
        lambda n, chunk: jnp.sum(histograms(n, chunk))))(net, padding_only)
    assert float(value) == 0.0
    assert all(np.all(g == 0.0) for g in leaves(grads))


def test_root_round_trip(problem, in_memory, tmp_path):
    sample, _, net = problem
    # two files: chunks never straddle files, so each file's last chunk is padded
    io.write_sample(tmp_path / "a.root", {k: v[:300] for k, v in sample.items()})
    io.write_sample(tmp_path / "b.root", {k: v[300:] for k, v in sample.items()})
    source = ChunkedSource.from_root([tmp_path / "a.root", tmp_path / "b.root"], features=FEATURES,
                                     process_names=("signal", "background"), chunk_size=CHUNK)
    assert source.n_chunks == 5 + 4
    chunks = list(source)
    real = np.concatenate([np.asarray(c.weight) != 0 for c in chunks])
    for name in FEATURES:
        read = np.concatenate([np.asarray(c.features[name]) for c in chunks])[real]
        np.testing.assert_array_equal(read, sample[name])
    value, grads = streamed_value_and_grad(histograms, objective, net, source)
    assert float(value) == pytest.approx(float(in_memory[0]), rel=1e-10)
    assert relative_difference(leaves(grads), leaves(in_memory[1])) < 1e-10


OPTIMIZER = optax.adam(1e-2)


@pytest.fixture(scope="module")
def trained_in_memory(problem):
    _, events, net = problem
    return train(in_memory_loss, net, events, n_steps=4, optimizer=OPTIMIZER, progress=False)


def test_train_on_chunked_source_equals_in_memory(problem, trained_in_memory, tmp_path):
    sample, _, net = problem
    source = ChunkedSource.from_arrays(sample, CHUNK, features=FEATURES,
                                       process_names=("signal", "background"))
    streamed = train(LOSS, net, source, n_steps=4, optimizer=OPTIMIZER, progress=False)
    assert relative_difference(leaves(streamed.params), leaves(trained_in_memory.params)) < 1e-10
    np.testing.assert_allclose(streamed.history.loss, trained_in_memory.history.loss, rtol=1e-10)
    assert streamed.history.loss[-1] < streamed.history.loss[0]
    # interrupted after step 2 (checkpoint there), resumed: the same run to the last bit
    ckpt = tmp_path / "ckpt"

    def stop_at_2(step, params, loss):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(LOSS, net, source, n_steps=4, optimizer=OPTIMIZER, progress=False,
              checkpoint_path=ckpt, callback=stop_at_2)
    resumed = train(LOSS, net, source, n_steps=4, optimizer=OPTIMIZER, progress=True,
                    checkpoint_path=ckpt)
    for a, b in zip(leaves(resumed.params), leaves(streamed.params)):
        np.testing.assert_array_equal(a, b)
    assert resumed.history.loss == streamed.history.loss


# --------------------------------------------------------------------------- bad input
def generator_source(sample, spoil=lambda index, columns: columns, name="mc-generator"):
    """A generator source over ``sample`` whose chunk ``i`` passes through ``spoil``."""

    def make_chunk(index):
        columns = {k: v[index * CHUNK:(index + 1) * CHUNK].copy() for k, v in sample.items()}
        return spoil(index, columns)

    return ChunkedSource.from_generator(make_chunk, 8, chunk_size=CHUNK, features=FEATURES,
                                        process_names=("signal", "background"), name=name)


def without_y_in_chunk_5(index, columns):
    if index == 5:
        del columns["y"]
    return columns


def nan_in_chunk_6(index, columns):
    if index == 6:
        columns["x"][3] = np.nan
    return columns


def test_later_chunk_lacking_a_branch_or_holding_nan(problem):
    sample, _, net = problem
    with pytest.raises(SampleIOError, match=r"mc-generator, chunk 5 .*missing branch.*'y'"):
        streamed_value_and_grad(histograms, objective, net, generator_source(sample, without_y_in_chunk_5))
    with pytest.raises(SampleIOError, match=r"mc-generator, chunk 6 .*'x' has 1 non-finite.*event 387"):
        streamed_value_and_grad(histograms, objective, net, generator_source(sample, nan_in_chunk_6))


def test_train_raises_before_any_update(problem, tmp_path):
    """Chunk 6 turns NaN in the backward pass of step 1 (after the forward pass read it
    fine): train raises naming the chunk, step 1's update is not applied."""
    sample, _, net = problem
    reads = {"chunk 6": 0}

    def nan_on_fourth_read(index, columns):
        if index == 6:
            reads["chunk 6"] += 1
            if reads["chunk 6"] == 4:  # step 0: forward, backward; step 1: forward, backward
                columns["x"][0] = np.inf
        return columns

    source = generator_source(sample, nan_on_fourth_read)
    ckpt = tmp_path / "ckpt"
    seen = []
    with pytest.raises(SampleIOError, match=r"chunk 6 .*'x' has 1 non-finite"):
        train(LOSS, net, source, n_steps=4, optimizer=OPTIMIZER, progress=False,
              checkpoint_path=ckpt, checkpoint_every=1,
              callback=lambda step, params, loss: seen.append((step, params)))
    assert [step for step, _ in seen] == [1]  # step 0 done, step 1 not
    diff, _ = eqx.partition(net, eqx.is_inexact_array)
    params, *_, step, meta = load_checkpoint(ckpt, diff, OPTIMIZER.init(diff), jax.random.PRNGKey(0))
    assert step == 1 and len(meta["history"]["loss"]) == 1
    for a, b in zip(leaves(params), leaves(eqx.partition(seen[0][1], eqx.is_inexact_array)[0])):
        np.testing.assert_array_equal(a, b)


def test_root_files_with_a_missing_branch_or_nan(problem, tmp_path):
    sample, _, _ = problem
    io.write_sample(tmp_path / "good.root", sample)
    io.write_sample(tmp_path / "no_y.root", {k: v for k, v in sample.items() if k != "y"})
    with pytest.raises(SampleIOError, match=r"no_y.root.*missing branch for 'y'"):
        ChunkedSource.from_root([tmp_path / "good.root", tmp_path / "no_y.root"], features=FEATURES,
                                process_names=("signal", "background"), chunk_size=CHUNK)
    spoiled = {k: v.copy() for k, v in sample.items()}
    spoiled["y"][200] = np.nan  # event 200: chunk 3 of the file
    io.write_sample(tmp_path / "nan.root", spoiled)
    source = ChunkedSource.from_root(tmp_path / "nan.root", features=FEATURES,
                                     process_names=("signal", "background"), chunk_size=CHUNK)
    with pytest.raises(SampleIOError, match=r"nan.root, chunk 3 .*NaN values in branch.*y: 1"):
        list(source)


def test_memory_cap_and_settings(problem):
    sample, _, _ = problem
    row = bytes_per_event(len(FEATURES))
    assert row == 8 * 3 + 4
    expected = (rf"chunk_size 1000 events x {row} bytes .* exceeds memory_cap 20000 bytes; "
                rf"use chunk_size <= {20000 // row}")
    with pytest.raises(ConfigError, match=expected):
        ChunkedSource.from_arrays(sample, 1000, features=FEATURES,
                                  process_names=("signal", "background"), memory_cap=20_000)
    ChunkedSource.from_arrays(sample, 20_000 // row, features=FEATURES,
                              process_names=("signal", "background"), memory_cap=20_000)
    with pytest.raises(ConfigError, match="chunk_size must be a positive"):
        ChunkedSource.from_arrays(sample, 0, features=FEATURES, process_names=("signal", "background"))
    source = ChunkedSource.from_arrays(sample, CHUNK, features=FEATURES,
                                       process_names=("signal", "background"))
    with pytest.raises(ConfigError, match="batch_size must be None"):
        train(LOSS, None, source, n_steps=1, batch_size=32, progress=False)
    with pytest.raises(ConfigError, match="loss_fn must be a diffana.streaming.StreamedLoss"):
        train(in_memory_loss, None, source, n_steps=1, progress=False)
