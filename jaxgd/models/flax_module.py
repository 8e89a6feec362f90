"""Flax modules (NNX, and Linen) as jaxgd models: their ``Param`` variables are the pytree jaxgd trains.

A built Flax module holds its own parameters and cannot be re-initialised from another
key, while every member of a population needs its own initialisation: so
:func:`from_flax` takes ``make(key)``, the function that builds the module, and calls it
(under ``jax.vmap`` for a population) inside :meth:`FlaxModel.init`. Following Flax's
convention, the module is called on a batch. Needs ``pip install 'jaxgd[flax]'``.

**Batch norm and dropout.** A module with batch statistics (``nnx.BatchNorm``'s ``BatchStat``
variables, Linen's ``batch_stats`` collection) or dropout (``nnx.Dropout``'s RNG streams; a Linen
module with a mode switch, below) follows the protocol's stateful form: its batch statistics are the
model's state, trained per member and checkpointed. jaxgd replaces the module's own RNG streams with
the member's key at every step (``nnx.reseed``; for Linen ``rngs={"dropout": ..., "params": ...}``, two
keys folded from the member's, the second serving every other stream, which Flax falls back to it), and switches training and evaluation
modes: NNX's ``module.train()`` / ``module.eval()``, and a mode switch of the module's, Linen's or
NNX's: a ``__call__`` argument ``train``, ``training`` or ``deterministic`` (``deterministic=not
train``), or for Linen a dataclass field of one of those names (set with ``module.clone``).
:meth:`FlaxModel.batch_statistics` recomputes the statistics from inputs, for the landscape's lines.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxgd.errors import InvalidArgument, InvalidType, MissingDependency
from jaxgd.io.fingerprint import describe_or_none

#: A module's mode switch: its name -> its value in training (evaluation: the opposite).
MODE_SWITCHES = {"train": True, "training": True, "deterministic": False}


def _flax():
    try:
        import flax  # noqa: F401
        from flax import linen, nnx
    except ImportError:
        raise MissingDependency("from_flax needs Flax: pip install 'jaxgd[flax]'") from None
    return linen, nnx


class FlaxModel:
    """A Flax module built by ``make(key)`` as a jaxgd model (made by :func:`from_flax`).

    Hashed by identity: wrap a module once and reuse the model, so that its compiled
    programs are reused too.
    """

    def __init__(self, make: Callable[[jax.Array], Any], example_x):
        linen, nnx = _flax()
        import flax.errors
        if isinstance(make, (nnx.Module, linen.Module)):
            name = type(make).__name__
            example = f"{name}(rngs=nnx.Rngs(key))" if isinstance(make, nnx.Module) else f"{name}(...)"
            raise InvalidType(f"from_flax needs make(key), the function that builds the module, not a built {name}: "
                              f"e.g. from_flax(lambda key: {example}, example_x), so that every member gets its own "
                              "initialisation.")
        if not callable(make):
            raise InvalidType(f"from_flax needs make(key) -> a Flax module, got {make!r}.")
        self.make = make
        self.example_shape = tuple(jnp.shape(example_x))
        if len(self.example_shape) < 2:
            raise InvalidArgument(f"from_flax: example_x must be a batch of inputs, shape (batch, *input_shape); "
                                  f"got shape {self.example_shape} (one example? add a batch axis: x[None]).")
        key = jax.random.key(0)
        module = make(key)
        self._switch = None  # (name, "arg" or "field") of the module's mode switch
        if isinstance(module, (nnx.Module, linen.Module)):
            self._switch = _mode_switch(module, linen)
        if isinstance(module, nnx.Module):
            self.kind = "nnx"
            self._graphdef, params, stats, rest = nnx.split(module, nnx.Param, nnx.BatchStat, ...)
            rng_types = (nnx.RngKey, nnx.RngCount)
            others = sorted({type(v).__name__ for v in jax.tree.leaves(rest, is_leaf=lambda v: isinstance(v, nnx.Variable))
                             if not isinstance(v, rng_types)})
            if others:
                raise InvalidArgument(f"from_flax: the module holds {', '.join(others)} variables besides its Param, "
                                      "BatchStat and RNG ones; jaxgd trains Param variables and keeps BatchStat "
                                      "variables as the model's state.")
            self._template, self._stats_template, self._rest = params, stats, rest
            self._streams = tuple(sorted({stream.key.tag for _, stream in nnx.iter_graph(module)
                                          if isinstance(stream, nnx.RngStream)}))
            self.stateful = bool(jax.tree.leaves(stats)) or bool(self._streams) or self._switch is not None
        elif isinstance(module, linen.Module):
            self.kind = "linen"
            self._module = module
            self._example = jnp.zeros(self.example_shape, jnp.asarray(example_x).dtype)
            collections = set(jax.eval_shape(lambda k: self._linen(False).init(k, self._example, **self._mode(False)),
                                             key))
            if not collections <= {"params", "batch_stats"}:
                raise InvalidArgument(f"from_flax: the Linen module has collections {sorted(collections)}; jaxgd trains "
                                      "'params' and keeps 'batch_stats' as the model's state.")
            if "batch_stats" in collections and self._switch is None:
                raise InvalidArgument("from_flax: the Linen module has batch statistics but no mode switch (a __call__ "
                                      "argument or field 'train', 'training' or 'deterministic'); jaxgd switches "
                                      "training and evaluation with it.")
            self._batch_stats = "batch_stats" in collections
            self.stateful = self._switch is not None
        else:
            raise InvalidType(f"from_flax: make(key) returned {type(module).__name__}, not a flax.nnx or flax.linen Module.")
        x = jax.ShapeDtypeStruct(self.example_shape, jnp.float32)
        try:
            if self.stateful:
                params, state = jax.eval_shape(self.init, key)
                out = jax.eval_shape(lambda p, s, x: self.apply(p, s, x)[0], params, state, x)
                jax.eval_shape(lambda p, s, x, k: self.apply(p, s, x, key=k, train=True)[0], params, state, x, key)
            else:
                out = jax.eval_shape(self.apply, jax.eval_shape(self.init, key), x)
        except flax.errors.InvalidRngError as e:
            raise InvalidArgument(f"from_flax: the module draws random numbers where jaxgd gives it no key ({e}); "
                                  "a module that draws them in training only needs a mode switch (a __call__ "
                                  "argument, or a Linen field, 'train', 'training' or 'deterministic') that turns "
                                  "them off in evaluation.") from None
        if len(out.shape) != 2 or out.shape[0] != self.example_shape[0]:
            raise InvalidArgument(f"from_flax: the module maps a batch {self.example_shape} to {out.shape}; jaxgd needs "
                                  "logits of shape (batch, classes).")
        self.num_outputs = int(out.shape[1])

    def init(self, key: jax.Array):
        """The module's parameters, as nested dicts of arrays, built by ``make(key)`` (and, for a stateful
        module, its batch statistics: ``(params, state)``)."""
        _, nnx = _flax()
        if self.kind == "nnx":
            _, params, stats, _ = nnx.split(self.make(key), nnx.Param, nnx.BatchStat, ...)
            params = nnx.to_pure_dict(params)
            return (params, nnx.to_pure_dict(stats)) if self.stateful else params
        variables = self._linen(False, self.make(key)).init(key, self._example, **self._mode(False))
        if not self.stateful:
            return variables["params"]
        return variables["params"], dict(variables.get("batch_stats", {}))

    def apply(self, params, *args, key: jax.Array | None = None, train: bool = False):
        """Logits of the module called on the batch ``x``: ``apply(params, x)``, or for a stateful module
        ``apply(params, state, x, *, key, train) -> (logits, state)``."""
        _, nnx = _flax()
        if not self.stateful:
            (x,) = args
            if self.kind == "nnx":
                return nnx.merge(self._graphdef, self._fill(self._template, params), self._stats_template,
                                 self._rest)(x)
            return self._module.apply({"params": params}, x)
        state, x = args
        if self.kind == "linen":
            variables = {"params": params, **({"batch_stats": state} if self._batch_stats else {})}
            module = self._linen(train)
            if not train:
                return module.apply(variables, x, **self._mode(False)), state
            # "dropout" is Flax's stream for dropout; a module's other streams fall back to "params"
            rngs = {} if key is None else {"dropout": jax.random.fold_in(key, 0), "params": jax.random.fold_in(key, 1)}
            logits, updated = module.apply(variables, x, rngs=rngs, mutable=["batch_stats"] if self._batch_stats else [],
                                           **self._mode(True))
            return logits, dict(updated.get("batch_stats", state)) if self._batch_stats else state
        module = nnx.merge(self._graphdef, self._fill(self._template, params),
                           self._fill(self._stats_template, state),
                           jax.tree.map(lambda v: v, self._rest))  # fresh RNG variables, at this trace level
        if train:
            module.train()
            if key is not None and self._streams:  # the member's own draws, not the module's streams
                nnx.reseed(module, **{tag: jax.random.fold_in(key, i) for i, tag in enumerate(self._streams)})
        else:
            module.eval()
        logits = module(x, **self._mode(train))
        return logits, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))

    def batch_statistics(self, params, x: jax.Array, batch_size: int = 256):
        """The batch statistics recomputed from the inputs ``x (n, *input_shape)``: each ``nnx.BatchNorm`` (or
        Linen ``nn.BatchNorm``) layer's batch means and variances in training mode (no dropout), averaged over
        batches of ``batch_size`` (the last partial batch left out when there are several), as
        :meth:`jaxgd.CNN.batch_statistics` and as Git Re-Basin and REPAIR reset statistics after changing the
        weights (Jordan et al. 2022, arXiv 2211.08403). The landscape's lines call it at every point."""
        linen, nnx = _flax()
        if not self.stateful:
            raise InvalidArgument("batch_statistics: the module has no batch statistics.")
        n = x.shape[0]
        size = min(batch_size, n)
        batches = x[:n // size * size].reshape((n // size, size) + x.shape[1:])
        if self.kind == "nnx":
            zero = jax.tree.map(jnp.zeros_like, nnx.to_pure_dict(self._stats_template))

            def one(xb):  # momentum 0: each layer's "running" statistics are the batch's own
                module = nnx.merge(self._graphdef, self._fill(self._template, params), self._fill(self._stats_template, zero),
                                   jax.tree.map(lambda v: v, self._rest))
                module.train()
                owned = set()
                for path, node in nnx.iter_graph(module):
                    if isinstance(node, nnx.Dropout):
                        node.deterministic = True
                    elif isinstance(node, nnx.BatchNorm):
                        node.momentum = 0.0
                        owned.add(tuple(path))
                stats = nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))
                others = [p for p, _ in jax.tree_util.tree_flatten_with_path(stats)[0]
                          if tuple(k.key for k in p[:-1]) not in owned]
                if others:
                    raise InvalidArgument(f"batch_statistics: the module keeps BatchStat variables outside nnx.BatchNorm "
                                          f"layers ({jax.tree_util.keystr(others[0])}); jaxgd recomputes those of "
                                          "nnx.BatchNorm only.")
                module(xb, **self._mode(True))
                return nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))
        else:
            def reset(next_fun, args, kwargs, context):  # Linen: the batch's statistics in place of the average
                layer = context.module
                if context.method_name != "__call__":
                    return next_fun(*args, **kwargs)
                if isinstance(layer, linen.Dropout):
                    return args[0]
                if not isinstance(layer, linen.BatchNorm) or not layer.is_mutable_collection("batch_stats"):
                    return next_fun(*args, **kwargs)
                for name in ("mean", "var"):
                    layer.put_variable("batch_stats", name, jnp.zeros_like(layer.get_variable("batch_stats", name)))
                out = next_fun(*args, **kwargs)
                for name in ("mean", "var"):  # momentum * 0 + (1 - momentum) * the batch's
                    layer.put_variable("batch_stats", name, layer.get_variable("batch_stats", name) / (1 - layer.momentum))
                return out

            zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(self.init, jax.random.key(0))[1])

            def one(xb):
                with linen.intercept_methods(reset):
                    _, updated = self._linen(True).apply({"params": params, "batch_stats": zero}, xb,
                                                         mutable=["batch_stats"], **self._mode(True))
                return dict(updated["batch_stats"])

        return jax.tree.map(lambda a: jnp.mean(a, axis=0), jax.lax.map(one, batches))

    def _switched(self, where: str, train: bool) -> dict:
        """``{switch: its value}`` for training or evaluation if the module's switch is ``where`` (``"arg"``,
        ``"field"``), else ``{}``."""
        if self._switch is None or self._switch[1] != where:
            return {}
        name = self._switch[0]
        return {name: train if MODE_SWITCHES[name] else not train}

    def _mode(self, train: bool) -> dict:
        """The keyword argument that puts the module in training or evaluation mode (none without one)."""
        return self._switched("arg", train)

    def _linen(self, train: bool, module=None):
        """The Linen module (``module``, default the one built at wrapping), its mode field (if it has one) set
        for training or evaluation."""
        module = self._module if module is None else module
        field = self._switched("field", train)
        return module.clone(**field) if field else module

    @staticmethod
    def _fill(template, values):
        _, nnx = _flax()
        state = jax.tree.map(lambda v: v, template)  # a fresh State to fill
        nnx.replace_by_pure_dict(state, values)
        return state

    def describe(self) -> dict:
        make, _ = describe_or_none(self.make)
        shapes = jax.eval_shape(self.init, jax.random.key(0))
        # "modes": how jaxgd switches the module's modes and keys its streams (2: mode switches, fold_in keys);
        # a checkpoint trained the older way is not resumed the newer
        record = {"model": f"flax.{self.kind}", "make": make, "modes": 2}
        if not self.stateful:
            return {**record, "params": jax.tree.map(lambda a: list(a.shape), shapes)}
        return {**record, "params": jax.tree.map(lambda a: list(a.shape), shapes[0]),
                "state": jax.tree.map(lambda a: list(a.shape), shapes[1])}

    def __repr__(self):
        return f"from_flax({getattr(self.make, '__qualname__', self.make)!s}, example_x {self.example_shape})"


def _mode_switch(module, linen) -> tuple[str, str] | None:
    """The module's mode switch: ``(name, "arg")`` for a ``__call__`` argument, else ``(name, "field")`` for a
    Linen dataclass field; ``None`` if it has none. An argument rules over a field (Flax's ``nn.merge_param``
    pattern: a field ``train = None`` that the argument fills), unless that field of the same name is set on
    the built module; two arguments, or two fields, are refused: jaxgd would not know which one rules."""
    args = [a for a in MODE_SWITCHES if a in inspect.signature(module.__call__).parameters]
    fields = ([f.name for f in dataclasses.fields(module) if f.name in MODE_SWITCHES]
              if isinstance(module, linen.Module) else [])
    found = [(a, "arg") for a in args] if args else [(f, "field") for f in fields]
    if len(found) == 1 and found[0][0] in fields and getattr(module, found[0][0]) is not None:
        found = [(found[0][0], "field")]  # merge_param with the field set: the argument must stay None
    if len(found) > 1:
        raise InvalidArgument(f"from_flax: the module has several mode switches ({', '.join(n for n, _ in found)}); "
                              "jaxgd switches training and evaluation with one.")
    return found[0] if found else None


def from_flax(make: Callable[[jax.Array], Any], example_x) -> FlaxModel:
    """A Flax module as a jaxgd model.

    Args:
      make: ``make(key)`` builds the module, e.g. ``lambda key: MyNet(rngs=nnx.Rngs(key))``
        for Flax NNX (or returns a ``flax.linen.Module``, initialised with ``key``).
      example_x: a batch of inputs ``(batch, *input_shape)`` (checks that the module
        returns ``(batch, classes)`` logits; Linen modules are initialised on it).

    Returns:
      A model for :func:`jaxgd.fit`: ``init(key)`` gives the module's ``Param``
      variables as nested dicts, ``apply(params, x)`` calls the module on a batch. A module with
      batch norm or dropout follows the stateful form (see the module docstring).
    """
    return FlaxModel(make, example_x)
