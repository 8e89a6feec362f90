"""Optimizers: any optax optimizer, by name or by factory, with hyperparameters that may differ per member.

``TrainConfig.optimizer`` names an optimizer (:data:`NAMED`) or is an optax factory
such as ``optax.adamw``; its keyword hyperparameters come from
``TrainConfig.optimizer_args``, the learning rate, the momentum and the weight decay.
:class:`Optimizer` is the static (hashable) description the compiled programs take; the
numeric hyperparameters are wrapped with ``optax.inject_hyperparams``, so they live in
the optimizer state as arrays and every member of a population can have its own.

The learning rate at step ``t`` is the member's base rate times the schedule's factor
``schedule(t)`` (1 without a schedule), written into the state before each update.
Weight decay is decoupled (Loshchilov & Hutter 2019, arXiv 1711.05101): an optimizer with
its own ``weight_decay`` (``adamw``, ``lion``) applies it; for the others jaxgd adds
``-learning_rate * weight_decay * params`` to the update, as ``optax.adamw`` does.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgd.errors import InvalidArgument, InvalidType


def sgd(learning_rate):
    """Plain gradient descent, the lesson's: ``params -= learning_rate * gradient``."""
    return optax.sgd(learning_rate)


def momentum(learning_rate, momentum=0.9):
    """Gradient descent with heavy-ball momentum (Polyak 1964)."""
    return optax.sgd(learning_rate, momentum=momentum)


def nesterov(learning_rate, momentum=0.9):
    """Gradient descent with Nesterov momentum (Sutskever et al. 2013)."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


#: Optimizers by name: jaxgd's three SGD variants and optax's factories.
NAMED: dict[str, Callable] = {
    "sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adam": optax.adam, "adamw": optax.adamw,
    "lion": optax.lion, "rmsprop": optax.rmsprop, "adagrad": optax.adagrad, "lamb": optax.lamb,
}

#: Schedules by name: factors of the base learning rate (a callable ``step -> factor`` is one too).
SCHEDULES = ("constant", "cosine", "linear", "exponential")


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def resolve(optimizer) -> tuple[str, Callable]:
    """``(name, factory)`` of ``TrainConfig.optimizer``; refuses instances with a sentence showing the factory form."""
    if isinstance(optimizer, optax.GradientTransformation):
        raise InvalidType(
            "TrainConfig.optimizer got an optax optimizer instance, which cannot be recorded by value (its "
            "hyperparameters are hidden in closures); pass its factory and hyperparameters instead, e.g. "
            "TrainConfig(optimizer=optax.adamw, learning_rate=1e-3, optimizer_args={'weight_decay': 1e-4}).")
    if isinstance(optimizer, str):
        if optimizer in NAMED:
            return optimizer, NAMED[optimizer]
        if optimizer.startswith("optax.") and callable(getattr(optax, optimizer[6:], None)):
            return optimizer, getattr(optax, optimizer[6:])
        raise InvalidArgument(f"Unknown optimizer {optimizer!r}; choose one of {', '.join(NAMED)}, 'optax.<name>', "
                         "or pass an optax factory such as optax.adamw.")
    if callable(optimizer):
        for name, fn in NAMED.items():
            if fn is optimizer:
                return name, fn
        name = f"{getattr(optimizer, '__module__', '')}.{getattr(optimizer, '__qualname__', repr(optimizer))}"
        return name.removeprefix("optax._src.alias.").removeprefix("."), optimizer
    raise InvalidType(f"TrainConfig.optimizer must be a name or an optax optimizer factory, got {optimizer!r}.")


def factory_parameters(factory: Callable) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        raise InvalidType(f"Cannot read the hyperparameters of the optimizer factory {factory!r}.") from None


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """The static description of a run's optimizer (a field of the compiled programs' spec).

    Attributes:
      name: how ``config.json`` names it (``"adamw"``, ``"optax.lion"``, ``"mymodule.my_opt"``).
      factory: the optax factory, called with keyword hyperparameters.
      static: non-numeric arguments (booleans, strings, ``None``), passed as they are.
      numeric: names of the numeric hyperparameters held in the optimizer state (per member).
      decoupled_decay: jaxgd adds the weight decay itself (the factory has no ``weight_decay``).
    """

    name: str
    factory: Callable
    static: tuple[tuple[str, Any], ...] = ()
    numeric: tuple[str, ...] = ("learning_rate",)
    decoupled_decay: bool = False

    def transform(self, hyperparams: dict) -> optax.GradientTransformation:
        """The optax transformation holding ``hyperparams`` (a value, or an array per member under vmap)."""
        static = dict(self.static)

        def make(**kw):
            return self._make(**kw)

        # inject_hyperparams reads the factory's signature: name every argument
        make.__signature__ = inspect.Signature([inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY)
                                                for k in (*static, *hyperparams)])
        return optax.inject_hyperparams(make, static_args=tuple(static))(**static, **hyperparams)

    def _make(self, learning_rate, **kw):
        if not self.decoupled_decay:
            return self.factory(learning_rate=learning_rate, **kw)
        weight_decay = kw.pop("weight_decay")
        inner = self.factory(learning_rate=learning_rate, **kw)

        def update(updates, state, params=None):
            updates, state = inner.update(updates, state, params)
            return jax.tree.map(lambda u, p: u - learning_rate * weight_decay * p, updates, params), state

        return optax.GradientTransformation(inner.init, update)


def build(config, per_member: tuple[str, ...] = ()) -> tuple[Optimizer, dict[str, float]]:
    """The :class:`Optimizer` of a ``TrainConfig`` and the base values of its numeric hyperparameters.

    ``per_member`` names hyperparameters a population sets per member: they are held in
    the state even where the config leaves them at the factory's default.
    """
    name, factory = resolve(config.optimizer)
    params = factory_parameters(factory)
    if "learning_rate" not in params:
        raise InvalidArgument(f"The optimizer {name} takes no learning_rate; jaxgd needs a factory with one.")
    args = dict(config.optimizer_args or {})
    for key in ("learning_rate", "momentum"):
        if key in args:
            raise InvalidArgument(f"Set {key} with TrainConfig.{key}, not optimizer_args.")
    weight_decay = config.weight_decay
    if "weight_decay" in args:  # the factory's own argument: the same as TrainConfig.weight_decay
        if config.weight_decay is not None:
            raise InvalidArgument("weight_decay is given twice, as TrainConfig.weight_decay and in optimizer_args: "
                                  "give it once.")
        if "weight_decay" not in params:
            raise InvalidArgument(f"The {name} optimizer takes no weight_decay; set TrainConfig.weight_decay for "
                                  "decoupled weight decay with any optimizer.")
        weight_decay = args.pop("weight_decay")
        if not (_is_number(weight_decay) and math.isfinite(weight_decay) and weight_decay >= 0):
            raise InvalidArgument(f"optimizer_args['weight_decay'] must be a non-negative number, got "
                                  f"{weight_decay!r}.")
    if config.momentum is not None:
        if "momentum" not in params:
            raise InvalidArgument(f"momentum={config.momentum} has no effect with the {name} optimizer; choose "
                             f"optimizer='momentum' or 'nesterov' (or one that takes momentum, such as rmsprop).")
        args["momentum"] = config.momentum
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    decay_given = weight_decay is not None or "weight_decay" in per_member
    own_decay = "weight_decay" in params
    for key in (*args, *per_member):
        if key not in params and key != "weight_decay" and not accepts_any:
            names = ", ".join(k for k in params if k != "learning_rate")
            raise InvalidArgument(f"The {name} optimizer has no hyperparameter {key!r}; it takes {names or 'none'}.")
    numeric = {"learning_rate": float(config.learning_rate)}
    static = {}
    for key, value in args.items():
        (numeric if _is_number(value) else static)[key] = float(value) if _is_number(value) else value
    decoupled = False
    if decay_given:
        wd = 0.0 if weight_decay is None else float(weight_decay)
        if own_decay:
            numeric["weight_decay"] = wd if weight_decay is not None else float(params["weight_decay"].default)
        elif wd != 0.0 or "weight_decay" in per_member:
            numeric["weight_decay"] = wd
            decoupled = True
    for key in per_member:
        if key not in numeric:
            default = params[key].default if key in params else inspect.Parameter.empty
            if not _is_number(default):
                raise InvalidArgument(f"The {name} optimizer's {key} has no numeric default ({default!r}); set it in "
                                 "optimizer_args to vary it per member.")
            numeric[key] = float(default)
    opt = Optimizer(name=name, factory=factory, static=tuple(sorted(static.items())), numeric=tuple(numeric),
                    decoupled_decay=decoupled)
    return opt, numeric


def recorded_hyperparameters(config) -> dict:
    """Every hyperparameter of the config's optimizer, defaults included: what ``config.json`` records."""
    name, factory = resolve(config.optimizer)
    out = {}
    for key, p in factory_parameters(factory).items():
        if p.default is not inspect.Parameter.empty and (p.default is None or isinstance(p.default, (bool, int, float, str))):
            out[key] = p.default
    opt, numeric = build(config)
    out.update(dict(opt.static))
    out.update(numeric)
    if opt.decoupled_decay or "weight_decay" not in out:
        out["weight_decay"] = float(config.weight_decay or 0.0)
    return {"optimizer": name, **out}


def with_learning_rate(opt_state, lr):
    """The optimizer state with its injected learning rate set to ``lr`` (the schedule's rate for this step)."""
    hp = dict(opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, hp["learning_rate"].dtype)
    return opt_state._replace(hyperparams=hp)


def advanced(opt_state, steps: int, lr):
    """The state of plain SGD after ``steps`` updates made outside optax (:mod:`jaxgd.training.deferred`)."""
    return with_learning_rate(opt_state, lr)._replace(count=opt_state.count + steps)


def schedule_factor(schedule, step, total_steps: int, steps_per_epoch: int):
    """The factor of the base learning rate at optimizer step ``step`` (0-based)."""
    if callable(schedule):
        return jnp.asarray(schedule(step), jnp.float32)
    if schedule in (None, "constant"):
        return None
    if schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, max(total_steps, 1))(step)
    if schedule == "linear":
        return optax.linear_schedule(1.0, 0.0, max(total_steps, 1))(step)
    if schedule == "exponential":
        return optax.exponential_decay(1.0, transition_steps=steps_per_epoch, decay_rate=0.95)(step)
    raise InvalidArgument(f"Unknown schedule {schedule!r}.")


def step_size(schedule, lr, step, total_steps: int, steps_per_epoch: int):
    """Learning rate at optimizer step ``step`` for a base rate ``lr``: ``lr * schedule_factor(...)``."""
    factor = schedule_factor(schedule, step, total_steps, steps_per_epoch)
    return lr if factor is None else lr * factor.astype(jnp.result_type(lr))


def check_learning_rate(name: str, values, dtype=np.float32) -> None:
    """Refuses learning rates that are not positive and finite, or that round to zero in ``dtype``."""
    arr = np.asarray(values, np.float64)
    if arr.size == 0:
        return
    if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        bad = arr[~(np.isfinite(arr) & (arr > 0))].flat[0]
        raise InvalidArgument(f"{name} must be positive and finite, got {bad!r}.")
    tiny = arr[np.asarray(arr, dtype) == 0]
    if tiny.size:
        raise InvalidArgument(f"{name}={float(tiny.flat[0])!r} is zero in {np.dtype(dtype).name}, the training dtype; "
                         "nothing would learn.")
    if not math.isfinite(float(np.max(np.asarray(arr, dtype)))):
        raise InvalidArgument(f"{name}={float(arr.max())!r} overflows {np.dtype(dtype).name}.")
