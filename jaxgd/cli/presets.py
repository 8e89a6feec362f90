"""The models the command line and the studies build by name, and what ``--model`` brings by default.

One place for both: ``jaxgd train --model cnn`` and ``experiments/memorization.py --model cnn``
build their networks with :func:`build_model`, and the training options a model brings when
they are not given are :data:`MODEL_DEFAULTS`.
"""
from __future__ import annotations

from jaxgd.errors import InvalidArgument

#: The models built by name.
MODELS = ("mlp", "cnn")

#: What ``--model`` brings when an option is not given: the lesson's network, and a CNN setup that reaches
#: 98% on the 8x8 digits and 99% on MNIST (cross-entropy, ReLU, He initialisation, momentum SGD).
MODEL_DEFAULTS = {
    "mlp": {"hidden": (16, 16), "channels": None, "activation": "sigmoid", "cost": "quadratic", "optimizer": "sgd",
            "lr": 3.0, "batch_size": 10, "epochs": 50},
    "cnn": {"hidden": None, "channels": (16, 32), "activation": "relu", "cost": "cross_entropy",
            "optimizer": "momentum", "lr": 0.05, "batch_size": 32, "epochs": 20},
}


def model_default(option: str) -> str:
    """``MODEL_DEFAULTS[*][option]`` as help text: ``"mlp: 16,16; cnn: ..."``."""
    shown = {m: d[option] for m, d in MODEL_DEFAULTS.items() if d[option] is not None}
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    return "; ".join(f"{m}: {fmt(v)}" for m, v in shown.items())


def resolve_model_options(args) -> None:
    """Fills the options not given with ``--model``'s defaults; refuses options that mean nothing for it."""
    defaults = MODEL_DEFAULTS[args.model]
    for name in ("hidden", "channels"):
        if getattr(args, name, None) is not None and defaults[name] is None:
            other = "channels" if name == "hidden" else "hidden"
            raise InvalidArgument(f"--{name} has no meaning for --model {args.model} (it takes --{other}).")
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    if args.dataset == "digits" and args.data_dir is not None:
        raise InvalidArgument("--data-dir has no effect with --dataset digits (the digits are embedded); drop one.")


def build_model(kind: str, data, *, activation: str, cost: str, hidden: tuple[int, ...] = (),
                channels: tuple[int, ...] | None = None, init: str | None = None, batch_norm: bool = False,
                dropout: float | None = None):
    """The model ``kind`` names (``"mlp"`` or ``"cnn"``), sized for ``data``.

    An MLP has ``hidden`` widths and a sigmoid output (softmax with the cross-entropy cost); a CNN has
    ``channels`` and ``hidden`` dense layers after its convolutions. ``init`` replaces the model's own
    initialiser; ``batch_norm`` (CNN only) and ``dropout`` add those layers.
    """
    from jaxgd.mlp import MLP
    from jaxgd.models import CNN

    extra = {} if init is None else {"initializer": init}
    if dropout is not None:
        extra["dropout"] = dropout
    if kind == "mlp":
        if batch_norm:
            raise InvalidArgument("--batch-norm is for --model cnn: the lesson's MLP has no batch norm (it takes "
                                  "--dropout).")
        output = "softmax" if cost == "cross_entropy" else "sigmoid"
        return MLP((data.input_dim, *hidden, data.num_classes), activation=activation, output=output, **extra)
    if kind == "cnn":
        if batch_norm:
            extra["batch_norm"] = True
        return CNN(data.input_shape, data.num_classes, channels=channels, hidden=tuple(hidden or ()),
                   activation=activation, **extra)
    raise InvalidArgument(f"Unknown model {kind!r}; choose one of {', '.join(MODELS)}, or pass a model object.")


def model_name(model) -> str:
    """A short name for tables and titles: ``64-16-16-10``, ``cnn 16,32`` or the class name."""
    from jaxgd.mlp import MLP

    if isinstance(model, MLP):
        return "-".join(map(str, model.sizes))
    channels = getattr(model, "channels", None)
    return f"cnn {','.join(map(str, channels))}" if channels is not None else type(model).__name__
