"""Any model through the engine: the protocol, jaxgd's CNN, and Flax and Equinox modules."""
import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgd
from tests.conftest import Killed, kill_after
from jaxgd import CNN, MLP, TrainConfig, fit
from jaxgd.landscape import align, barrier, sharpness
from jaxgd.training.loop import train_chunk
from jaxgd.models import check_model
from jaxgd.models.cnn import NORM_EPS

CNN_CONFIG = TrainConfig(cost="cross_entropy", optimizer="momentum", learning_rate=0.05, batch_size=32, epochs=3)


@dataclasses.dataclass(frozen=True)
class Softmax2:
    """A plain-JAX model that is neither an MLP nor a CNN: two functions and a hidden width."""

    n_in: int
    width: int = 12
    n_out: int = 10

    def init(self, key):
        k1, k2 = jax.random.split(key)
        return {"u": jax.random.normal(k1, (self.n_in, self.width)) / np.sqrt(self.n_in),
                "v": jax.random.normal(k2, (self.width, self.n_out)) / np.sqrt(self.width)}

    def apply(self, params, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ params["u"]) @ params["v"]


def _flat(small_digits):
    return small_digits.replace(input_shape=(64,))


def _same(a, b):
    return all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_plain_jax_model_trains_alone_and_as_a_population(small_digits):
    model = Softmax2(64)
    config = TrainConfig(cost="cross_entropy", optimizer="adam", learning_rate=0.01, batch_size=20, epochs=8)
    alone = fit(jax.random.key(0), model, small_digits, config)
    assert alone.history["test_accuracy"][-1] > 0.8 and set(alone.params) == {"u", "v"}
    pop = fit(jax.random.split(jax.random.key(1), 20), model, small_digits, config)
    assert pop.params["u"].shape == (20, 64, 12) and pop.final("test_accuracy").min() > 0.7
    member = jax.tree.map(lambda a: a[3], pop.params)
    chex.assert_trees_all_close(member, fit(jax.random.split(jax.random.key(1), 20)[3], model, small_digits,
                                            config).params, rtol=1e-4, atol=1e-5)
    pa, pb = (jax.tree.map(lambda a: a[i], pop.params) for i in (0, 1))
    x, y = small_digits.x_train, small_digits.y_train
    assert float(barrier(model, "cross_entropy", pa, pb, x, y, num=5)) >= 0
    assert float(sharpness(model, "cross_entropy", pa, x[:100], y[:100], iters=10)) > 0
    with pytest.raises(ValueError, match="align permutes hidden units.*Softmax2 has none"):
        align(model, pa, pb)


def test_models_that_break_the_protocol_are_named(small_digits):
    class NoApply:
        def init(self, key):
            return {}

    with pytest.raises(TypeError, match="NoApply has no apply method"):
        check_model(NoApply())

    class Unhashable(Softmax2):
        __hash__ = None  # as a mutable dataclass or an Equinox module

    with pytest.raises(TypeError, match="must be hashable"):
        fit(0, Unhashable(64), small_digits, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="has 3 outputs but digits has 10 classes"):
        fit(0, Softmax2(64, n_out=3), small_digits, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match=r"cannot be applied to a batch of digits's inputs, shape \(batch, 8, 8, 1\)"):
        fit(0, Softmax2(65), small_digits, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="takes inputs of shape"):
        fit(0, CNN((28, 28, 1), 10), small_digits, CNN_CONFIG)
    with pytest.raises(ValueError, match="TrainConfig.init='he' chooses the initialiser of jaxgd's MLP and CNN"):
        fit(0, Softmax2(64), small_digits, TrainConfig(epochs=1, init="he"))
    with pytest.raises(ValueError, match="hand-written backprop is written for jaxgd.MLP"):
        fit(0, Softmax2(64), small_digits, TrainConfig(epochs=1, gradient="backprop"))


def _reference_cnn(model, params, x):
    """The CNN written with XLA's own convolutions and pooling, for comparison."""
    dims = model.conv_dims
    spatial = "HW"[:dims] if dims == 2 else "W"
    numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    h = x.reshape((x.shape[0],) + model.input_shape[:dims] + (model.in_channels,))
    for l, layer in enumerate(params["conv"]):
        h = jax.lax.conv_general_dilated(h, layer["w"], (1,) * dims, "SAME", dimension_numbers=numbers) + layer["b"]
        if "norm" in params:  # batch norm in training: the batch's statistics, over every axis but the channels
            axes = tuple(range(h.ndim - 1))
            h = (h - h.mean(axes)) / jnp.sqrt(h.var(axes) + NORM_EPS) * params["norm"][l]["scale"] \
                + params["norm"][l]["offset"]
        window = (1,) + tuple(model.pool if s >= model.pool else 1 for s in h.shape[1:-1]) + (1,)
        h = jax.nn.relu(jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, window, window, "VALID"))
    h = h.reshape(h.shape[0], -1)
    w = params["dense"][0]["w"]
    z = h @ w.reshape(-1, w.shape[-1]) + params["dense"][0]["b"]
    for layer in params["dense"][1:]:
        z = jax.nn.relu(z) @ layer["w"] + layer["b"]
    return z


@pytest.mark.parametrize("shape,kw", [((8, 8, 1), {}), ((28, 28, 1), {}), ((7, 9, 3), {"kernel_size": 4}),
                                      ((40,), {"channels": (5, 6, 7), "kernel_size": 5}),
                                      ((12, 2), {"conv_dims": 1, "hidden": (9,)}), ((6, 6), {"pool": 3})])
def test_cnn_is_the_convolution_of_xla_with_max_pooling(x64, shape, kw):
    model = CNN(shape, 10, **kw)
    params = model.init(jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (3, *shape), jnp.float64)
    out = model.apply(params, x)
    assert out.shape == (3, 10) and model.num_params() == sum(a.size for a in jax.tree.leaves(params))
    np.testing.assert_allclose(out, _reference_cnn(model, params, x), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(model.apply(params, x.reshape(3, -1)), out, rtol=1e-12)  # flat rows too


@pytest.mark.parametrize("shape,kw", [((7, 9, 3), {"kernel_size": 4}), ((12, 2), {"conv_dims": 1, "pool": 3})])
def test_a_batch_norm_cnns_derivatives_are_those_of_xla_pooling(x64, shape, kw):
    """The pooling's own derivative (the window's first largest element) gives JAX's gradient and
    Hessian-vector products of the network written with XLA's pooling (no ties in random float64 data)."""
    model = CNN(shape, 10, batch_norm=True, **kw)
    params, state = model.init(jax.random.key(0), dtype=jnp.float64)
    params["norm"] = [{"scale": jax.random.normal(jax.random.key(2), n["scale"].shape, jnp.float64),
                       "offset": n["offset"] + 0.1} for n in params["norm"]]  # negative scales too
    x = jax.random.normal(jax.random.key(1), (5, *shape), jnp.float64)
    y = jnp.arange(5) % 10

    def cost(forward):
        return lambda p: jnp.mean(jax.nn.logsumexp(forward(p), -1) - forward(p)[jnp.arange(5), y])

    ours = cost(lambda p: model.apply(p, state, x, train=True)[0])
    xla = cost(lambda p: _reference_cnn(model, p, x))
    np.testing.assert_allclose(ours(params), xla(params), rtol=1e-12)
    flat = lambda tree: np.concatenate([np.ravel(a) for a in jax.tree.leaves(tree)])  # noqa: E731
    expected = flat(jax.grad(xla)(params))
    np.testing.assert_allclose(flat(jax.grad(ours)(params)), expected, rtol=1e-8, atol=1e-12)
    # compiled, the convolutions' output gradients are first written to memory (cnn._gradient_in_memory)
    np.testing.assert_allclose(flat(jax.jit(jax.grad(ours))(params)), expected, rtol=1e-8, atol=1e-12)
    v = jax.tree.map(lambda a: jnp.ones_like(a) / a.size, params)
    hvp = lambda f: jax.jvp(jax.grad(f), (params,), (v,))[1]  # noqa: E731
    np.testing.assert_allclose(flat(hvp(ours)), flat(hvp(xla)), rtol=1e-7, atol=1e-10)
    compiled_hvp = jax.jit(lambda p, u: jax.jvp(jax.grad(ours), (p,), (u,))[1])  # arguments, not constants
    np.testing.assert_allclose(flat(compiled_hvp(params, v)), flat(hvp(xla)), rtol=1e-7, atol=1e-10)


def test_a_batch_norm_cnn_is_differentiated_alike_beside_a_nan(x64):
    """A NaN in the first example (the first element of every convolution's output) leaves the other
    examples' derivatives as they are without it (evaluation mode: each example normalised alone)."""
    model = CNN((8, 8, 1), 10, channels=(4, 6), batch_norm=True)
    params, state = model.init(jax.random.key(0), dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1), jnp.float64)
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape, a.dtype), params)
    tangent = jax.jit(lambda p, u, xs: jax.jvp(lambda q: model.apply(q, state, xs)[0], (p,), (u,))[1])
    with_nan = tangent(params, v, x.at[0, 0, 0, 0].set(jnp.nan))
    assert np.isnan(with_nan[0]).all() and np.isfinite(with_nan[1:]).all()
    np.testing.assert_allclose(with_nan[1:], tangent(params, v, x[1:]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(with_nan[1:], jax.jvp(lambda q: model.apply(q, state, x[1:])[0], (params,), (v,))[1],
                               rtol=1e-12, atol=1e-12)


def test_cnn_defaults_fit_the_digits_mnist_and_signals():
    assert [CNN(s, 10).feature_maps()[-1] for s in ((8, 8, 1), (28, 28, 1), (40,))] == [(2, 2), (7, 7), (10,)]
    assert hash(CNN((8, 8, 1), 10)) == hash(CNN([8, 8, 1], 10)) and CNN((8, 8, 1), 10) == CNN((8, 8, 1), 10)
    params = CNN((28, 28, 1), 10).init(jax.random.key(0))
    assert [l["w"].shape for l in params["conv"]] == [(3, 3, 1, 16), (3, 3, 16, 32)]
    assert params["dense"][0]["w"].shape == (49, 32, 10)
    std = float(jnp.std(params["conv"][1]["w"]))
    assert abs(std / np.sqrt(2 / (9 * 16)) - 1) < 0.05  # He initialisation
    for bad, message in [({"channels": (0,)}, "CNN channels"), ({"input_shape": (8, 8, 1, 1)}, "does not fit"),
                         ({"activation": "swish"}, "'swish'"), ({"initializer": "zeros"}, "'zeros'")]:
        with pytest.raises((ValueError, TypeError), match=message):
            CNN(**{"input_shape": (8, 8, 1), "num_classes": 10, **bad})


def test_a_50_member_cnn_population_is_one_compiled_program(small_digits, monkeypatch):
    traced = jax.jit(chex.assert_max_traces(train_chunk, n=1), static_argnames=("spec", "num_epochs", "evaluate"),
                     donate_argnums=(0,))
    monkeypatch.setattr(jaxgd.loop, "compiled_chunk", traced)
    model = CNN(small_digits.input_shape, 10, channels=(4, 8))
    pop = fit(jax.random.split(jax.random.key(0), 50), model, small_digits, CNN_CONFIG.replace(epochs=3))
    assert pop.params["conv"][0]["w"].shape == (50, 3, 3, 1, 4) and pop.history["test_cost"].shape == (50, 3)
    assert pop.final("test_accuracy").mean() > 0.3  # chance is 0.1: 3 epochs of 400 digits
    chex.clear_trace_counter()


def test_map_and_vmap_kernels_train_a_population_the_same_way(small_digits):
    from jaxgd.training.loop import train_epochs

    model = CNN(small_digits.input_shape, 10, channels=(4, 8))
    for order in ("per_seed", "shared"):
        run = jaxgd.prepare(jax.random.split(jax.random.key(2), 6), model, small_digits,
                            CNN_CONFIG.replace(data_order=order), devices=jax.devices()[:1])
        out = {}
        for kernel, batch in (("vmap", 1), ("map", 1), ("map", 4)):
            spec = dataclasses.replace(run.spec, kernel=kernel, member_batch=batch)
            out[kernel, batch] = jax.jit(lambda s, spec=spec: train_epochs(s, run.member, run.data, spec=spec,
                                                                         num_epochs=1))(run.state)
        for key in (("map", 1), ("map", 4)):
            chex.assert_trees_all_close(out[key].params, out["vmap", 1].params, rtol=1e-5, atol=1e-6)


def test_align_matches_the_channels_of_two_trained_cnns(small_digits):
    model = CNN(small_digits.input_shape, 10, channels=(8, 16), hidden=(24,))
    pop = fit(jax.random.split(jax.random.key(0), 2), model, small_digits, CNN_CONFIG.replace(epochs=6))
    pa, pb = (jax.tree.map(lambda a: a[i], pop.params) for i in (0, 1))
    aligned = align(model, pa, pb)
    x, y = small_digits.x_train, small_digits.y_train
    assert float(jnp.max(jnp.abs(model.apply(aligned, x) - model.apply(pb, x)))) <= 1e-5
    assert not np.allclose(aligned["conv"][0]["w"], pb["conv"][0]["w"])  # channels did move
    before = barrier(model, "cross_entropy", pa, pb, x, y)
    after = barrier(model, "cross_entropy", pa, aligned, x, y)
    assert after < before, (float(before), float(after))


def test_align_recovers_a_permutation_of_cnn_channels():
    from jaxgd.landscape import permute

    model = CNN((8, 8, 1), 10, channels=(5, 6), hidden=(7,))
    pa = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    perms = [rng.permutation(n) for n in (5, 6, 7)]
    pb = permute(pa, perms, model.permutation_spec())
    x = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    np.testing.assert_allclose(model.apply(pb, x), model.apply(pa, x), atol=1e-5)
    chex.assert_trees_all_close(align(model, pa, pb), pa, atol=1e-7)


def test_cnn_params_and_history_files_round_trip(small_digits, tmp_path):
    from jaxgd.io.files import flatten_params, load_params, save_npz

    model = CNN(small_digits.input_shape, 10, channels=(4,))
    params = model.init(jax.random.key(0))
    save_npz(tmp_path / "p.npz", flatten_params(params))
    assert sorted(flatten_params(params)) == ["conv/0/b", "conv/0/w", "dense/0/b", "dense/0/w"]
    chex.assert_trees_all_equal(load_params(tmp_path / "p.npz"), params)
    chex.assert_trees_all_equal(load_params(tmp_path / "p.npz", like=params), params)


def _resume_is_bit_identical(model, data, config, tmp_path, key):
    whole = fit(key, model, data, config)
    with pytest.raises(Killed):
        fit(key, model, data, config, checkpoint=tmp_path, callback=kill_after(2))
    resumed = fit(key, model, data, config, checkpoint=tmp_path)
    assert _same(whole.params, resumed.params)
    for k in whole.history:
        np.testing.assert_array_equal(whole.history[k], resumed.history[k])
    return whole


def test_a_flax_nnx_model_trains_alone_as_a_population_and_resumes_bit_identically(small_digits, tmp_path):
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(64, 32, rngs=rngs)
            self.out = nnx.Linear(32, 10, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x.reshape(x.shape[0], -1))))

    model = jaxgd.from_flax(lambda key: Net(nnx.Rngs(key)), small_digits.x_train[:2])
    config = TrainConfig(cost="cross_entropy", optimizer="adam", learning_rate=0.005, batch_size=20, epochs=4)
    alone = _resume_is_bit_identical(model, small_digits, config, tmp_path / "one", jax.random.key(0))
    assert alone.history["test_accuracy"][-1] > 0.8 and alone.params["hidden"]["kernel"].shape == (64, 32)
    pop = _resume_is_bit_identical(model, small_digits, config.replace(epochs=3), tmp_path / "pop",
                                   jax.random.split(jax.random.key(1), 4))
    assert pop.params["out"]["bias"].shape == (4, 10) and pop.final("test_accuracy").min() > 0.7
    assert not np.allclose(pop.params["hidden"]["kernel"][0], pop.params["hidden"]["kernel"][1])


def test_a_flax_linen_model_trains(small_digits):
    from flax import linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(10)(nn.relu(nn.Dense(24)(x.reshape(x.shape[0], -1))))

    model = jaxgd.from_flax(lambda key: Net(), small_digits.x_train[:2].reshape(2, 8, 8, 1))
    result = fit(jax.random.split(jax.random.key(0), 3), model, small_digits,
                 TrainConfig(cost="cross_entropy", optimizer="adam", learning_rate=0.01, batch_size=20, epochs=3))
    assert result.final("test_accuracy").min() > 0.7


def test_an_equinox_model_trains_alone_as_a_population_and_resumes_bit_identically(small_digits, tmp_path):
    import equinox as eqx

    model = jaxgd.from_equinox(lambda key: eqx.nn.MLP(64, 10, 32, 1, activation=jax.nn.relu, key=key))
    data = _flat(small_digits)  # the Equinox MLP takes flat vectors, one at a time
    config = TrainConfig(cost="cross_entropy", optimizer="sgd", learning_rate=0.5, batch_size=20, epochs=4)
    alone = _resume_is_bit_identical(model, data, config, tmp_path / "one", jax.random.key(0))
    assert alone.history["test_accuracy"][-1] > 0.8
    pop = _resume_is_bit_identical(model, data, config.replace(epochs=3), tmp_path / "pop",
                                   jax.random.split(jax.random.key(1), 4))
    assert pop.params.layers[0].weight.shape == (4, 32, 64) and pop.final("test_accuracy").min() > 0.6
    with pytest.raises(TypeError, match="not an equinox.Module"):
        jaxgd.from_equinox(lambda key: 3)


def test_a_model_is_checkpointed_with_a_record_of_what_it_is(small_digits, tmp_path):
    from jaxgd.runs.checkpoint import CheckpointError

    config = CNN_CONFIG.replace(epochs=1)
    fit(0, CNN(small_digits.input_shape, 10, channels=(4,)), small_digits, config, checkpoint=tmp_path)
    with pytest.raises(CheckpointError, match=r"model.channels=\[4\] in the checkpoint but model.channels=\[6\]"):
        fit(0, CNN(small_digits.input_shape, 10, channels=(6,)), small_digits, config, checkpoint=tmp_path)


def test_no_test_or_benchmark_imports_a_private_name():
    import ast
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent
    offences = []
    for path in [*root.glob("tests/*.py"), *root.glob("benchmarks/**/*.py"), *root.glob("experiments/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxgd"):
                offences += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in ("jaxgd", "train_module"):
                    offences.append(f"{path.name}: {node.attr}")
    assert offences == []


def test_one_training_step_reads_in_one_short_file():
    import inspect

    import jaxgd.training.step

    source = inspect.getsource(jaxgd.step)
    assert len(source.splitlines()) < 150
    for name in ("def rows", "def gradient_fn", "def apply_update", "def sgd_step", "def train_steps"):
        assert name in source
