"""What the studies share: their common options (the command line's own), the data and model of a study, and
the driver that runs one into a run directory."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxgd.cli.presets import MODELS  # the models a study builds by name (its config also takes any model object)

#: Options every experiment takes, as (flag, config field).
TRAINING_FIELDS = ("activation", "cost", "optimizer", "learning_rate", "batch_size", "epochs", "seeds", "seed",
                   "max_members", "n_train", "data_dir", "num_classes", "input_scale", "model", "channels")


def parser(prog: str, description: str, presets: dict, default_out: str, model_options: bool = True):
    """A parser with ``--preset``, the data options and the training options every study shares, from the
    command line's own (``--model`` and ``--channels`` only with ``model_options``: a study of several models
    names its own). Activations and costs are offered from their registries."""
    from jaxgd.activations import hidden_activations
    from jaxgd.cli import options as opt
    from jaxgd.costs import COSTS
    from jaxgd.training.config import OPTIMIZERS

    p = opt.Parser(prog=prog, description=description, formatter_class=opt.HelpFormatter)
    p.add_argument("--preset", choices=tuple(presets), default=next(iter(presets)))
    opt.add_data_options(p)
    if model_options:
        p.add_argument("--model", choices=MODELS, help="the preset's fully connected network, or a CNN")
        p.add_argument("--channels", type=opt.int_list, help="CNN: channels of each convolution")
    p.add_argument("--activation", choices=hidden_activations(), help="hidden nonlinearity (default: the preset's)")
    p.add_argument("--cost", choices=COSTS, help="(default: the preset's)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="(default: the preset's)")
    p.add_argument("--lr", type=opt.positive(float), dest="learning_rate", help="(default: the preset's)")
    p.add_argument("--batch-size", type=opt.positive(int), dest="batch_size", help="(default: the preset's)")
    p.add_argument("--epochs", type=opt.positive(int), help="(default: the preset's)")
    p.add_argument("--seeds", type=opt.positive(int), help="(default: the preset's)")
    p.add_argument("--seed", type=int, help="(default: the preset's)")
    p.add_argument("--max-members", type=opt.positive(int), dest="max_members",
                   help="train at most this many networks per program")
    opt.add_out_options(p, default_out.format(preset="<preset>"), 10)
    opt.add_machine_options(p, populations_only=False)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    opt.add_distributed_options(p)
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
    called with ``data``, when it is a function), else the model it names built as the command line builds it
    (:func:`jaxgd.cli.presets.build_model`): an MLP with ``hidden`` widths or a CNN with ``channels`` (and
    ``hidden`` dense layers after its convolutions)."""
    from jaxgd.cli.presets import build_model

    model = config.model
    if not isinstance(model, str):
        return model(data) if callable(model) and not hasattr(model, "apply") else model
    return build_model(model, data, activation=config.activation, cost=config.cost, hidden=hidden,
                       channels=channels or config.channels, init=config.init)


def record(config) -> dict:
    """``config`` as JSON: a Dataset by its name, shape and content hash, a model object by its description."""
    import jaxgd
    from jaxgd.io.fingerprint import describe_or_none, digest
    from jaxgd.models import describe
    from jaxgd.io.files import to_jsonable

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


def main(prog: str, argv, parse_args, make_config, run, figures, format_table, default_out: str,
         check=None) -> int:
    """Parses, starts JAX as the command line does, checks (``check(config)``: the memory the study needs, from
    its configuration alone) before the output directory is touched, runs, commits ``results.json`` and the
    figures as one run directory (:func:`jaxgd.runs.rundir.run_in`), prints the table; bad input exits 2 in
    one line."""
    import json

    from jaxgd.cli.guard import guarded
    from jaxgd.cli.options import run_mode
    from jaxgd.cli.startup import start_jax

    def body():
        args = parse_args(argv)
        start_jax(args, population=True)  # the compilation cache, one CPU device per core, --distributed
        from jaxgd.io.files import write_json
        from jaxgd.parallel import distributed
        from jaxgd.runs.rundir import run_in

        config = make_config(args)
        if check is not None:
            check(config)
        out = Path(args.out or default_out.format(preset=args.preset))
        writer = distributed.is_writer()

        def work(pending: Path) -> dict:
            results = run(config, progress=not args.quiet, checkpoint=pending / "checkpoints",
                          checkpoint_every=args.checkpoint_every)
            if writer:
                write_json(pending / "results.json", results)
                figures(results, pending)
            return results

        finished, results = run_in(out, run_mode(args), record(config), work)
        if finished:
            results = distributed.from_process_zero(lambda: json.loads((out / "results.json").read_text()))
        if writer:
            print(format_table(results))
            print(f"{results['wall_seconds']:.0f} s -> {out}/results.json and figures in {out}")
        return 0

    return guarded(prog, body)
