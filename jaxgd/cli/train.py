"""``jaxgd train``: train a network (default: the lesson's, on the embedded digits) into a run directory.

The run's files — ``config.json``, ``metrics.json``, ``metrics.csv``, ``params.npz`` (and
``model_state.npz``: batch norm's running statistics), the figures and the checkpoints — are committed
together (:mod:`jaxgd.runs.rundir`); a comma list of learning rates, weight decays or momenta trains
every value x ``--seeds`` seeds as one population and prints a table per setting.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from jaxgd.cli import options as opt
from jaxgd.cli.presets import MODEL_DEFAULTS, build_model, model_default, model_name, resolve_model_options
from jaxgd.cli.startup import start_jax, use_deterministic_kernels
from jaxgd.errors import InvalidArgument

#: ``jaxgd train`` options that do not change the numbers a run produces (left out of what ``rerun`` replays).
NOT_RECORDED = ("command", "out", "resume", "overwrite", "quiet", "checkpoint_every", "distributed", "coordinator",
                "num_processes", "process_id", "cpu_devices", "compilation_cache", "log")


def add_parser(sub) -> argparse.ArgumentParser:
    from jaxgd.activations import hidden_activations
    from jaxgd.costs import COSTS
    from jaxgd.mlp import INITIALISERS
    from jaxgd.training.config import EVAL_UNITS, MATMUL_PRECISIONS, OPTIMIZERS, TrainConfig
    from jaxgd.training.optim import SCHEDULES

    t = sub.add_parser("train", help="train a network (default: the lesson's, on the embedded digits)",
                       formatter_class=opt.HelpFormatter)
    opt.add_data_options(t)
    model_dependent = dict(default=argparse.SUPPRESS)  # filled from MODEL_DEFAULTS when not given
    t.add_argument("--model", choices=tuple(MODEL_DEFAULTS), default="mlp",
                   help="the lesson's fully connected network, or a small convolutional one")
    t.add_argument("--hidden", type=opt.int_list, **model_dependent, help=f"MLP hidden widths ({model_default('hidden')})")
    t.add_argument("--channels", type=opt.int_list, **model_dependent,
                   help=f"CNN channels of each convolution ({model_default('channels')})")
    t.add_argument("--activation", choices=hidden_activations(), **model_dependent,
                   help=f"hidden nonlinearity ({model_default('activation')})")
    t.add_argument("--cost", choices=COSTS, **model_dependent, help=f"({model_default('cost')})")
    t.add_argument("--optimizer", choices=OPTIMIZERS, **model_dependent, help=f"({model_default('optimizer')})")
    t.add_argument("--lr", type=opt.swept(opt.positive(float)), **model_dependent,
                   help=f"base learning rate ({model_default('lr')}); jaxgd's cost has no 1/2, so Nielsen's eta is "
                        "2 x --lr; a comma list sweeps it")
    t.add_argument("--momentum", type=opt.swept(float), default=None,
                   help="momentum coefficient of --optimizer momentum/nesterov/rmsprop (default 0.9 for the first "
                        "two); a comma list sweeps it")
    t.add_argument("--weight-decay", type=opt.swept(opt.non_negative), default=None, dest="weight_decay",
                   help="decoupled weight decay, for any optimizer (default: the optimizer's own, none for SGD); "
                        "a comma list sweeps it")
    t.add_argument("--dropout", type=opt.swept(opt.rate), default=None,
                   help="dropout rate in [0, 1) before every dense layer (CNN) or after every hidden layer (MLP); "
                        "a comma list sweeps it (default: no dropout)")
    t.add_argument("--batch-norm", action="store_true", dest="batch_norm",
                   help="batch normalisation after each convolution (--model cnn)")
    t.add_argument("--augment", type=opt.augmentation, default=None, metavar="SPEC",
                   help="data augmentation on each minibatch, e.g. crop:2,flip,noise:0.1 (random crops with zero "
                        "padding, horizontal flips, Gaussian noise)")
    t.add_argument("--seeds", type=opt.positive(int), default=1,
                   help="train this many seeds of every setting as one population (keys split from --seed)")
    t.add_argument("--schedule", choices=SCHEDULES, default=None, help="learning-rate schedule (default constant)")
    t.add_argument("--batch-size", type=opt.not_swept("--batch-size", opt.batch_size_option), **model_dependent,
                   help=f"minibatch size, or 'full' ({model_default('batch_size')})")
    t.add_argument("--epochs", type=opt.not_swept("--epochs", opt.positive(int)), **model_dependent,
                   help=f"({model_default('epochs')})")
    t.add_argument("--init", choices=tuple(INITIALISERS), default=None,
                   help="weight initialiser (default: the model's own, normal for the MLP, he for the CNN)")
    t.add_argument("--seed", type=int, default=0, help="the network's key: its initialisation and data order")
    t.add_argument("--eval-every", type=opt.positive(int), default=1, help="evaluate every N epochs (or steps)")
    t.add_argument("--eval-unit", choices=EVAL_UNITS, default="epochs", dest="eval_unit",
                   help="what --eval-every counts: epochs, or optimizer steps (full batch; with minibatches a "
                        "multiple of the steps of an epoch)")
    t.add_argument("--target-accuracy", type=opt.fraction, default=None, help="stop at this training accuracy")
    t.add_argument("--validation", type=int, default=0, help="hold out N training examples for validation")
    t.add_argument("--gradient", choices=("autodiff", "backprop"), default="autodiff",
                   help="jax.grad or the MLP's hand-written backprop")
    t.add_argument("--metrics", type=opt.metric_names, default=(),
                   help="extra metrics, e.g. grad_norm or sharpness (the top Hessian eigenvalue, at every evaluation)")
    t.add_argument("--log", choices=("tensorboard", "wandb"), action="append", default=[],
                   help="also log the curves as TensorBoard event files (OUT/tensorboard) or to W&B; "
                        "OUT/metrics.csv is always written")
    t.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default=TrainConfig().matmul_precision,
                   help="float32 products everywhere (float32), or the platform's faster choice: "
                        "default (TF32 on GPUs)")
    opt.add_out_options(t, "runs/<timestamp>", 1)
    opt.add_machine_options(t)
    opt.add_distributed_options(t)
    opt.add_deterministic_option(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return t


def values(value) -> tuple:
    """An option's values: a swept option's tuple (or a JSON list replayed by ``rerun``), else ``(value,)``."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def sweep_grid(args) -> dict:
    """The swept options (a comma list, or a JSON list replayed by ``rerun``), as hyperparameter -> values."""
    return {opt.SWEPT[name]: values(getattr(args, name)) for name in opt.SWEPT
            if getattr(args, name, None) is not None and len(values(getattr(args, name))) > 1}


def command(args) -> int:
    if args.deterministic:
        use_deterministic_kernels()
    if args.validation < 0:
        raise InvalidArgument(f"--validation must be non-negative, got {args.validation}.")
    resolve_model_options(args)
    grid = sweep_grid(args)
    population = args.seeds > 1 or bool(grid)
    start_jax(args, population)
    import jax
    import numpy as np

    from jaxgd.io.fingerprint import digest
    from jaxgd.mlp import MLP
    from jaxgd.models import describe
    from jaxgd.parallel import distributed
    from jaxgd.runs.rundir import run_in
    from jaxgd.training.config import TrainConfig
    from jaxgd.training.fit import check
    from jaxgd.training.memory import check_population
    from jaxgd.training.population import sweep
    from jaxgd.training.validation import REGULARIZERS

    data = opt.load_data(args)
    first = {name: values(getattr(args, name))[0] if getattr(args, name) is not None else None for name in opt.SWEPT}
    model = build_model(args.model, data, activation=args.activation, cost=args.cost, hidden=args.hidden or (),
                        channels=args.channels, batch_norm=args.batch_norm, dropout=first["dropout"])
    config = TrainConfig(cost=args.cost, optimizer=args.optimizer, learning_rate=first["lr"],
                         batch_size=args.batch_size, epochs=args.epochs, init=args.init, momentum=first["momentum"],
                         weight_decay=first["weight_decay"], schedule=args.schedule,
                         target_accuracy=args.target_accuracy, eval_every=args.eval_every, eval_unit=args.eval_unit,
                         gradient=args.gradient, matmul_precision=args.matmul_precision, augment=args.augment)
    config.validate(data.n_train)
    if args.gradient == "backprop":
        from jaxgd.backprop import check_backprop

        check_backprop(model, args.cost)
    for name, swept_values in grid.items():  # every swept value is checked as a single one would be
        for value in swept_values:
            if name in TrainConfig.__dataclass_fields__:
                config.replace(**{name: value}).validate(data.n_train)
    if population:  # before any key or array of the population exists
        check_population(model, config, data, args.seeds * int(np.prod([len(v) for v in grid.values()])),
                         per_member=tuple(n for n in grid if n not in REGULARIZERS))
    members = sweep(jax.random.key(args.seed), grid or {"learning_rate": [config.learning_rate]}, args.seeds) \
        if population else None
    key = members.keys if population else args.seed
    hyperparams = {k: members.hyperparams[k] for k in grid} if population and grid else None
    run_config = {"command": "train", "dataset": data.name, "data_dir": args.data_dir, "n_train": data.n_train,
                  "n_test": int(data.x_test.shape[0]), "input_shape": list(data.input_shape),
                  "data_digest": digest(data.x_train, data.y_train, data.x_test, data.y_test),
                  "model": describe(model), "seed": args.seed, "seeds": args.seeds, "sweep": grid,
                  "train": config.to_dict(),
                  # what `jaxgd rerun` replays: every option that changes the numbers
                  "options": {k: v for k, v in sorted(vars(args).items()) if k not in NOT_RECORDED}}
    if isinstance(model, MLP):
        run_config.update(sizes=list(model.sizes), activation=model.activation, output=model.output)
    mode = opt.run_mode(args)
    check(key, model, data, config, metrics=list(args.metrics) or None, hyperparams=hyperparams)  # before --out
    out = Path(args.out or Path("runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    finished, summary = run_in(out, mode, run_config, section="options", work=lambda work: train_into(
        work, args, data, model, config, key, hyperparams, members, run_config))
    if distributed.is_writer():
        print(f"jaxgd: {out} holds this run, finished and verified: nothing to resume." if finished
              else summary + f" -> {out}")
    return 0


def train_into(work: Path, args, data, model, config, key, hyperparams, members, run_config) -> str:
    """Trains into ``work`` (a run directory's ``.pending``) and writes the run's files there; returns the summary."""
    from jaxgd.parallel import distributed
    from jaxgd.runs import loggers
    from jaxgd.training.fit import fit

    labels = members.labels if members is not None else None
    logs = [loggers.CSVLogger(work / "metrics.csv", labels)]
    if "tensorboard" in args.log:
        logs.append(loggers.TensorBoardLogger(work / "tensorboard", labels))
    if "wandb" in args.log:
        logs.append(loggers.WandbLogger(run_config, labels, dir=str(work)))
    result = fit(key, model, data, config, hyperparams=hyperparams, metrics=list(args.metrics) or None,
                 checkpoint=work / "checkpoints", checkpoint_every=args.checkpoint_every, progress=not args.quiet,
                 loggers=logs)
    if not distributed.is_writer():
        return ""
    metrics = write_results(work, result, data, members, args)
    return summary(result, data, members, args, metrics)


def write_results(work: Path, result, data, members, args) -> dict:
    """``metrics.json``, ``params.npz`` and the figures of a finished ``fit``; returns what ``metrics.json`` holds."""
    import jax
    import numpy as np

    from jaxgd.analysis import plots
    from jaxgd.analysis.statistics import grouped_stats
    from jaxgd.io.environment import environment
    from jaxgd.io.files import flatten_params, save_npz, write_json
    from jaxgd.mlp import MLP
    from jaxgd.models import num_params
    from jaxgd.runs.rundir import STATE_FILE

    model, config, h = result.model, result.config, result.history
    final = {name: result.final(name) for name in ("train_accuracy", "test_accuracy", "train_cost", "test_cost",
                                                   *args.metrics)}
    metrics = {
        **final, "epochs": result.epochs_run, "wall_seconds": result.wall_seconds,
        "first_epoch_seconds": result.first_epoch_seconds, "num_params": num_params(model),
        "diverged": result.diverged, "diverged_epoch": np.where(result.diverged, result.diverged_epoch, None)
        if members is not None else (int(result.diverged_epoch) if result.diverged else None),
        "initial": result.initial, "history": h, "environment": environment(),
    }
    if members is not None:
        metrics["members"] = {"count": int(result.num_members), "labels": members.labels,
                              "hyperparams": result.hyperparams}
        metrics["groups"] = {name: grouped_stats(final[name], members.group, result.diverged, labels=members.groups)
                             for name in final}
    write_json(work / "metrics.json", metrics)
    save_npz(work / "params.npz", flatten_params(result.params))
    if jax.tree.leaves(result.model_state):  # batch norm's running statistics: the network evaluates with them
        save_npz(work / STATE_FILE, flatten_params(result.model_state))
    title = (f"{data.name}: {model_name(model)} {args.activation}, {config.cost}, {config.optimizer} "
             f"lr={config.learning_rate}" + (f", {result.num_members} members" if members is not None else ""))
    plots.learning_curve(h, result.initial, work / "learning_curve.png", title=title)
    first = (lambda a: np.asarray(a)[0]) if members is not None else np.asarray
    if isinstance(model, MLP):
        plots.weights_image(first(result.params[0]["w"]), data.input_shape, work / "weights.png",
                            title=f"what each first-layer neuron looks for ({data.name}"
                                  + (", member 0)" if members is not None else ")"))
    elif getattr(model, "channels", None):  # the first convolution's filters, each drawn as a small image
        w = first(result.params["conv"][0]["w"])
        plots.weights_image(w.reshape(-1, w.shape[-1]), w.shape[:-1], work / "weights.png",
                            title=f"first-layer filters ({data.name})")
    if members is not None and len(members.groups) > 1:
        plots.sweep_figure(metrics["groups"], work / "sweep.png", title=f"{data.name}: {model_name(model)}, "
                           f"{args.seeds} seeds per setting, {result.epochs_run} epochs")
    return metrics


def summary(result, data, members, args, metrics) -> str:
    """The line a run ends with (and, for a population, the table of its settings, printed first)."""
    config, final = result.config, metrics
    if members is None and result.diverged:
        print(f"jaxgd: warning: training diverged at epoch {int(result.diverged_epoch)} (training cost "
              f"{final['train_cost']:.4g}, initially {float(result.initial['train_cost']):.4g}); it stopped there. "
              f"Try a smaller --lr than {config.learning_rate}.", file=sys.stderr)
    head = (f"{data.name} {model_name(result.model)} {args.activation}/{config.cost} {config.optimizer} "
            f"batch={config.batch_size or 'full'}")
    first = ("" if result.first_epoch_seconds is None  # resumed with every epoch trained already
             else f" (first epoch after {result.first_epoch_seconds:.1f} s)")
    timing = f"{result.epochs_run} epochs in {result.wall_seconds:.1f} s{first}"
    if members is None:
        return (f"{head} lr={config.learning_rate}: {timing}, train accuracy {final['train_accuracy']:.4f}, "
                f"test accuracy {final['test_accuracy']:.4f}, test cost {final['test_cost']:.4f}")
    print(sweep_table(metrics["groups"]["test_accuracy"], list(members.groups[0]), args.seeds))
    return f"{head}, {result.num_members} members ({len(members.groups)} settings x {args.seeds} seeds): {timing}"


def sweep_table(rows: list[dict], names: list[str], seeds: int) -> str:
    """The grouped table a sweep prints: test accuracy per setting, over the non-diverged seeds."""
    head = " | ".join(names)
    lines = [f"| {head} | seeds | test accuracy mean | std | 95% interval of the mean | diverged |",
             "|" + "---:|" * (len(names) + 5)]
    fmt = lambda v: "-" if v is None or v != v else f"{v:.4f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {' | '.join(f'{r[n]:g}' for n in names)} | {r['members']} | {fmt(r['mean'])} | "
                     f"{fmt(r['std'])} | {fmt(r['ci_low'])} .. {fmt(r['ci_high'])} | {r['excluded']} |")
    return "\n".join(lines)
