"""What both experiment scripts share: their common options, the data and model of a study, and the driver."""
from __future__ import annotations

import dataclasses
from pathlib import Path

#: Options every experiment takes, as (flag, config field).
TRAINING_FIELDS = ("activation", "cost", "optimizer", "learning_rate", "batch_size", "epochs", "seeds", "seed",
                   "max_members", "n_train", "data_dir", "num_classes", "input_scale", "model", "channels")
#: The models a study builds by name (a study's config also takes any model object).
MODELS = ("mlp", "cnn")


def parser(prog: str, description: str, presets: dict, default_out: str, model_options: bool = True):
    """A parser with ``--preset``, the data options and the training options every study shares
    (``--model`` and ``--channels`` only with ``model_options``: a study of several models names its own)."""
    from jaxgd.cli import Parser, add_data_options, add_distributed_options, add_out_options, int_list, positive
    from jaxgd.config import OPTIMIZERS

    p = Parser(prog=prog, description=description)
    p.add_argument("--preset", choices=tuple(presets), default=next(iter(presets)))
    add_data_options(p)
    if model_options:
        p.add_argument("--model", choices=MODELS, help="the preset's fully connected network, or a CNN")
        p.add_argument("--channels", type=int_list, help="CNN: channels of each convolution")
    p.add_argument("--activation", choices=("sigmoid", "tanh", "relu"))
    p.add_argument("--cost", choices=("quadratic", "cross_entropy"))
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=positive(float), dest="learning_rate")
    p.add_argument("--batch-size", type=positive(int), dest="batch_size")
    p.add_argument("--epochs", type=positive(int))
    p.add_argument("--seeds", type=positive(int))
    p.add_argument("--seed", type=int)
    p.add_argument("--max-members", type=positive(int), dest="max_members",
                   help="train at most this many networks per program")
    add_out_options(p, default_out.format(preset="<preset>"), 10)
    p.add_argument("--cpu-devices", type=positive(int), default=None, metavar="N", dest="cpu_devices",
                   help="on a CPU, make N JAX devices and spread the seeds over them (N = cores is fastest; "
                        "default: JAX's one CPU device)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_distributed_options(p)
    return p


def config_from_args(args, presets: dict, fields: tuple[str, ...], model_overrides: dict | None = None):
    """The preset named by ``--preset`` with ``--model``'s overrides (``model_overrides[model]``), then every
    option given on the command line, applied."""
    changes = {k: getattr(args, k) for k in TRAINING_FIELDS + fields if getattr(args, k, None) is not None}
    if args.dataset is not None or args.data_dir is not None:
        changes["dataset"] = args.dataset  # None with --data-dir: read IDX files
    base = presets[args.preset]
    if model_overrides:  # only studies of one model have them (and a `model` field)
        model = changes.get("model", base.model)
        if isinstance(model, str) and model != base.model:
            base = dataclasses.replace(base, **model_overrides.get(model, {}))
    return dataclasses.replace(base, **changes)


def study_data(config):
    """The study's :class:`jaxgd.data.Dataset`: ``config.dataset`` itself when it is one, else loaded by name
    (``None`` with ``config.data_dir``: a directory of IDX files); ``config.n_train`` applied."""
    import jaxgd

    if isinstance(config.dataset, jaxgd.data.Dataset):
        return jaxgd.data.subset(config.dataset, n_train=config.n_train)
    return jaxgd.data.load(config.dataset if config.dataset is not None else "idx", data_dir=config.data_dir,
                           n_train=config.n_train, num_classes=config.num_classes, scale=config.input_scale)


def study_model(config, data, hidden: tuple[int, ...], channels: tuple[int, ...] | None = None):
    """The study's network for ``data``: ``config.model`` itself when it is a model object (or what it returns,
    called with ``data``, when it is a function), else an MLP with ``hidden`` widths or a CNN with ``channels``
    (and ``hidden`` dense layers after its convolutions)."""
    import jaxgd

    model = config.model
    if not isinstance(model, str):
        return model(data) if callable(model) and not hasattr(model, "apply") else model
    if model == "mlp":
        output = "softmax" if config.cost == "cross_entropy" else "sigmoid"
        return jaxgd.MLP((data.input_dim, *hidden, data.num_classes), activation=config.activation, output=output,
                         initializer=config.init)
    if model == "cnn":
        return jaxgd.CNN(data.input_shape, data.num_classes, channels=channels or config.channels, hidden=hidden,
                         activation=config.activation, initializer=config.init)
    raise ValueError(f"Unknown model {model!r}; choose one of {', '.join(MODELS)}, or pass a model object.")


def record(config) -> dict:
    """``config`` as JSON: a Dataset by its name, shape and content hash, a model object by its description."""
    import jaxgd
    from jaxgd.fingerprint import describe_or_none, digest
    from jaxgd.models import describe
    from jaxgd.results import to_jsonable

    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, jaxgd.data.Dataset):
            value = {"dataset": value.name, "n_train": value.n_train, "input_shape": list(value.input_shape),
                     "num_classes": value.num_classes,
                     "digest": digest(value.x_train, value.y_train, value.x_test, value.y_test)}
        elif f.name == "model" and not isinstance(value, str):
            value = describe(value) if hasattr(value, "apply") else describe_or_none(value)[0]
        out[f.name] = value
    return to_jsonable(out)


def main(prog: str, argv, parse_args, make_config, run, figures, format_table, default_out: str) -> int:
    """Parses, runs, commits ``results.json`` and the figures as one run directory (:mod:`jaxgd.rundir`),
    prints the table; bad input exits 2 in one line."""
    import json

    from jaxgd.cli import guarded, run_mode, start_distributed
    from jaxgd.results import write_json
    from jaxgd.rundir import RunDir

    def body():
        args = parse_args(argv)
        if args.cpu_devices is not None:
            from jaxgd.sharding import use_cpu_devices

            use_cpu_devices(args.cpu_devices)  # before JAX's first computation
        start_distributed(args)
        from jaxgd import distributed

        config = make_config(args)
        out = Path(args.out or default_out.format(preset=args.preset))
        writer = distributed.is_writer()
        run_dir = RunDir(out, writer=writer)  # process 0 locks, checks and writes; every process agrees
        try:
            if distributed.from_process_zero(lambda: run_dir.open(run_mode(args), record(config)).finished):
                results = distributed.from_process_zero(lambda: json.loads((out / "results.json").read_text()))
            else:
                results = run(config, progress=not args.quiet, checkpoint=run_dir.pending / "checkpoints",
                              checkpoint_every=args.checkpoint_every)
                if writer:
                    write_json(run_dir.pending / "results.json", results)
                    figures(results, run_dir.pending)
                distributed.from_process_zero(lambda: bool(run_dir.commit()))
        finally:
            run_dir.close()
        distributed.barrier("jaxgd study committed")
        if writer:
            print(format_table(results))
            print(f"{results['wall_seconds']:.0f} s -> {out}/results.json and figures in {out}")
        return 0

    return guarded(prog, body)
