"""The ``jaxgd`` command: ``train`` and ``gradcheck`` (thin drivers over the library).

Bad options end with exit code 2 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from jaxgd.data.idx import IDXError
from jaxgd.data.tfds_source import DatasetNotPrepared

#: Errors that mean "the user asked for something that cannot be done", not a bug.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError, IDXError,
               DatasetNotPrepared)

#: XLA flags that make GPU runs deterministic (slower kernels, no autotuning); no effect on CPU,
#: whose programs are deterministic already.
DETERMINISTIC_XLA_FLAGS = ("--xla_gpu_deterministic_ops=true",)

#: Fields of a run's files that record when and how long, not what: left out of comparisons.
WALL_CLOCK_FIELDS = ("wall_seconds", "first_epoch_seconds", "environment")


class UsageError(Exception):
    pass


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless its help already says it or there is none to show."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)) or \
                action.default == () or action.option_strings == ["-h", "--help"]:
            return text
        return f"{text} (default: %(default)s)".strip()


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
        raise UsageError(f"{self.prog}: {message}")


def int_list(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive widths like 16,16, got {text!r}")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive widths like 16,16, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return values


def positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def batch_size_option(text: str):
    if text.lower() == "full":
        return None
    return positive(int)(text)


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def resolved_path(text: str) -> str:
    """An absolute path (symlinks resolved), or a one-line usage error for a path that cannot be resolved."""
    try:
        return str(Path(text).expanduser().resolve())
    except (RuntimeError, OSError) as e:  # a symlink loop, a path too long, ...
        raise argparse.ArgumentTypeError(f"cannot resolve {text!r}: {e}") from None


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="'digits' (embedded, the default), or a TFDS name: mnist, fashion_mnist, kmnist, cifar10, ...")
    # recorded absolute, so that `jaxgd rerun` and --resume find the data from any working directory
    p.add_argument("--data-dir", type=resolved_path, default=None,
                   help="a directory of IDX files (train-images-idx3-ubyte[.gz], ...); with --dataset, the TFDS data dir")
    p.add_argument("--n-train", type=positive(int), default=None, help="use only the first N training examples")
    p.add_argument("--num-classes", type=positive(int), default=None, metavar="N",
                   help="the number of classes: every label must lie in [0, N) (IDX default: the largest label plus "
                        "one, only when every class is present in the training labels)")
    p.add_argument("--input-scale", choices=("255", "minmax", "none"), default=None,
                   help="IDX images: divide by 255, map the training images' min..max to 0..1, or take as they are "
                        "(default: uint8 images divided by 255, other dtypes refused)")


def load_data(args):
    from jaxgd import data

    if args.data_dir is not None and not Path(args.data_dir).exists():
        raise FileNotFoundError(f"--data-dir {args.data_dir} does not exist.")
    name = args.dataset if args.dataset is not None else ("idx" if args.data_dir is not None else "digits")
    return data.load(name, data_dir=args.data_dir, n_train=args.n_train, validation=getattr(args, "validation", 0),
                     num_classes=getattr(args, "num_classes", None), scale=getattr(args, "input_scale", None))


#: What ``--model`` brings when an option is not given: the lesson's network, and a CNN setup that reaches
#: 98% on the 8x8 digits and 99% on MNIST (cross-entropy, ReLU, He initialisation, momentum SGD).
MODEL_DEFAULTS = {
    "mlp": {"hidden": (16, 16), "channels": None, "activation": "sigmoid", "cost": "quadratic", "optimizer": "sgd",
            "lr": 3.0, "batch_size": 10, "epochs": 50},
    "cnn": {"hidden": None, "channels": (16, 32), "activation": "relu", "cost": "cross_entropy",
            "optimizer": "momentum", "lr": 0.05, "batch_size": 32, "epochs": 20},
}


def _model_default(option: str) -> str:
    shown = {m: d[option] for m, d in MODEL_DEFAULTS.items() if d[option] is not None}
    fmt = lambda v: ",".join(map(str, v)) if isinstance(v, tuple) else str(v)  # noqa: E731
    return "; ".join(f"{m}: {fmt(v)}" for m, v in shown.items())


def _metric_names(text: str) -> tuple[str, ...]:
    from jaxgd.metrics import NAMED

    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [n for n in names if n not in NAMED]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected metric names from {', '.join(NAMED)}, got {text!r}")
    return names


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def swept(parse):
    """A number, or a comma list of them (swept: one group of the population per value)."""
    def parse_list(text: str):
        parts = [p.strip() for p in text.split(",")]
        if len(parts) == 1:
            return parse(parts[0])
        if any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
        values = tuple(parse(p) for p in parts)
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"a swept value is repeated in {text!r}")
        return values
    return parse_list


def _not_swept(option: str, parse):
    """A single value; a comma list is refused: the option changes the compiled program, not a hyperparameter."""
    def parse_one(text: str):
        if "," in text:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {option} cannot be swept within one population (it changes the compiled program, "
                "not a hyperparameter of the optimizer); run one job per value")
        return parse(text)
    return parse_one


#: Options a comma list sweeps, and the optimizer hyperparameter each one sets per member.
SWEPT = {"lr": "learning_rate", "weight_decay": "weight_decay", "momentum": "momentum"}


def build_parser() -> argparse.ArgumentParser:
    from jaxgd.activations import hidden_activations
    from jaxgd.config import MATMUL_PRECISIONS, OPTIMIZERS, TrainConfig
    from jaxgd.costs import COSTS
    from jaxgd.mlp import INITIALISERS
    from jaxgd.optim import SCHEDULES

    d = TrainConfig()
    parser = Parser(prog="jaxgd", description="How neural networks learn by gradient descent, in JAX.",
                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    t = sub.add_parser("train", help="train a network (default: the lesson's, on the embedded digits)",
                       formatter_class=_HelpFormatter)
    add_data_options(t)
    model_dependent = dict(default=argparse.SUPPRESS)  # filled from MODEL_DEFAULTS when not given
    t.add_argument("--model", choices=tuple(MODEL_DEFAULTS), default="mlp",
                   help="the lesson's fully connected network, or a small convolutional one")
    t.add_argument("--hidden", type=int_list, **model_dependent,
                   help=f"MLP hidden widths ({_model_default('hidden')})")
    t.add_argument("--channels", type=int_list, **model_dependent,
                   help=f"CNN channels of each convolution ({_model_default('channels')})")
    t.add_argument("--activation", choices=hidden_activations(), **model_dependent,
                   help=f"hidden nonlinearity ({_model_default('activation')})")
    t.add_argument("--cost", choices=COSTS, **model_dependent, help=f"({_model_default('cost')})")
    t.add_argument("--optimizer", choices=OPTIMIZERS, **model_dependent, help=f"({_model_default('optimizer')})")
    t.add_argument("--lr", type=swept(positive(float)), **model_dependent,
                   help=f"base learning rate ({_model_default('lr')}); jaxgd's cost has no 1/2, so Nielsen's eta is "
                        "2 x --lr; a comma list sweeps it")
    t.add_argument("--momentum", type=swept(float), default=None,
                   help="momentum coefficient of --optimizer momentum/nesterov/rmsprop (default 0.9 for the first "
                        "two); a comma list sweeps it")
    t.add_argument("--weight-decay", type=swept(_non_negative), default=None, dest="weight_decay",
                   help="decoupled weight decay, for any optimizer (default: the optimizer's own, none for SGD); "
                        "a comma list sweeps it")
    t.add_argument("--seeds", type=positive(int), default=1,
                   help="train this many seeds of every setting as one population (keys split from --seed)")
    t.add_argument("--schedule", choices=SCHEDULES, default=None, help="learning-rate schedule (default constant)")
    t.add_argument("--batch-size", type=_not_swept("--batch-size", batch_size_option), **model_dependent,
                   help=f"minibatch size, or 'full' ({_model_default('batch_size')})")
    t.add_argument("--epochs", type=_not_swept("--epochs", positive(int)), **model_dependent,
                   help=f"({_model_default('epochs')})")
    t.add_argument("--init", choices=tuple(INITIALISERS), default=None,
                   help="weight initialiser (default: the model's own, normal for the MLP, he for the CNN)")
    t.add_argument("--seed", type=int, default=0, help="the network's key: its initialisation and data order")
    t.add_argument("--eval-every", type=positive(int), default=1, help="evaluate every N epochs")
    t.add_argument("--target-accuracy", type=fraction, default=None, help="stop at this training accuracy")
    t.add_argument("--validation", type=int, default=0, help="hold out N training examples for validation")
    t.add_argument("--gradient", choices=("autodiff", "backprop"), default="autodiff",
                   help="jax.grad or the MLP's hand-written backprop")
    t.add_argument("--metrics", type=_metric_names, default=(), help="extra metrics, e.g. grad_norm")
    t.add_argument("--log", choices=("tensorboard", "wandb"), action="append", default=[],
                   help="also log the curves as TensorBoard event files (OUT/tensorboard) or to W&B; "
                        "OUT/metrics.csv is always written")
    t.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default=d.matmul_precision,
                   help="float32 products everywhere (float32), or the platform's faster choice: "
                        "default (TF32 on GPUs)")
    add_out_options(t, "runs/<timestamp>", 1)
    add_machine_options(t)
    add_distributed_options(t)
    add_deterministic_option(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("rerun", help="train again from a finished run's config.json and compare the results",
                       formatter_class=_HelpFormatter)
    r.add_argument("run_dir", help="a directory written by `jaxgd train`")
    r.add_argument("--out", default=None, help="a new directory for the rerun (default RUN_DIR-rerun, or -2, -3, ...)")
    add_distributed_options(r)

    g = sub.add_parser("gradcheck", help="compare the hand-written backprop with jax.grad, layer by layer",
                       formatter_class=_HelpFormatter)
    g.add_argument("--sizes", type=int_list, default=(784, 16, 16, 10), help="all widths, e.g. 784,16,16,10")
    g.add_argument("--activation", choices=("sigmoid", "tanh", "relu"), default="sigmoid")
    g.add_argument("--output", choices=("sigmoid", "softmax", "identity"), default="sigmoid")
    g.add_argument("--cost", choices=COSTS, default="quadratic")
    g.add_argument("--init", choices=tuple(INITIALISERS), default="normal")
    g.add_argument("--batch", type=positive(int), default=32)
    g.add_argument("--seed", type=int, default=0, help="key of the random network and batch")
    g.add_argument("--float32", action="store_true", help="compare in float32 instead of float64")
    return parser


def add_deterministic_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deterministic", action="store_true",
                   help=f"deterministic GPU kernels (XLA_FLAGS {' '.join(DETERMINISTIC_XLA_FLAGS)}); CPU runs are already")


def use_deterministic_kernels() -> None:
    """Adds :data:`DETERMINISTIC_XLA_FLAGS` to ``XLA_FLAGS``; must run before JAX starts its backends."""
    import os

    flags = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join(flags + [f for f in DETERMINISTIC_XLA_FLAGS if f not in flags])


#: ``jaxgd train`` options that do not change the numbers a run produces.
_NOT_RECORDED = ("command", "out", "resume", "overwrite", "quiet", "checkpoint_every", "distributed", "coordinator",
                 "num_processes", "process_id", "cpu_devices", "compilation_cache", "log")


def run_mode(args) -> str:
    """``new``, ``resume`` or ``overwrite``: how a run treats its ``--out`` (see :mod:`jaxgd.rundir`)."""
    if args.resume and getattr(args, "overwrite", False):
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: choose one.")
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out, the directory of the run to continue.")
    return "resume" if args.resume else "overwrite" if getattr(args, "overwrite", False) else "new"


def add_machine_options(p: argparse.ArgumentParser, populations_only: bool = True) -> None:
    p.add_argument("--cpu-devices", type=positive(int), default=None, metavar="N", dest="cpu_devices",
                   help="on a CPU, make N JAX devices and spread a population's members over them (default: one "
                        "per core" + (" for populations" if populations_only else "") + ")")
    p.add_argument("--no-compilation-cache", action="store_false", dest="compilation_cache",
                   help=f"do not use JAX's persistent compilation cache (default: in {cache_dir()})")


def cache_dir() -> Path:
    """Where the command line keeps JAX's persistent compilation cache (``JAXGD_CACHE_DIR`` to change)."""
    base = os.environ.get("JAXGD_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "jaxgd")
    return Path(base).expanduser() / "xla"


def start_jax(args, population: bool = True) -> None:
    """What the command line sets before JAX's first computation: the compilation cache (every compiled
    program kept, so that the next identical run starts at once), one CPU device per core for populations
    (:func:`jaxgd.sharding.use_cpu_devices`), and the ``jax.distributed`` job ``--distributed`` asks for."""
    import jax

    if getattr(args, "compilation_cache", True) and os.environ.get("JAXGD_COMPILATION_CACHE", "1") != "0":
        if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            jax.config.update("jax_compilation_cache_dir", str(cache_dir()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    distributed = getattr(args, "distributed", False) or getattr(args, "coordinator", None) is not None
    devices = getattr(args, "cpu_devices", None)
    if devices is not None or (population and not distributed):
        from jaxgd.sharding import use_cpu_devices

        try:
            use_cpu_devices(devices if devices is not None else cpu_cores_default())  # only the CPU backend
        except RuntimeError:
            if devices is not None:  # asked for explicitly: say it could not be done
                raise
            # called from Python after JAX started (jaxgd.cli.main in a session): keep its devices
    start_distributed(args)


def cpu_cores_default() -> int:
    from jaxgd.sharding import cpu_cores

    return cpu_cores()


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes (a jax.distributed job; see README, Many hosts)")
    g.add_argument("--distributed", action="store_true",
                   help="join a jax.distributed job: the cluster's environment (SLURM, TPU pods), jaxgd.launch's, "
                        "or the three options below")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None, help="process 0's address")
    g.add_argument("--num-processes", type=positive(int), default=None, metavar="N")
    g.add_argument("--process-id", type=int, default=None, metavar="I")


def start_distributed(args) -> None:
    """Joins the job ``--distributed`` asks for; before JAX's first computation."""
    explicit = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
        raise ValueError("--coordinator, --num-processes and --process-id go together.")
    if args.distributed or args.coordinator is not None:
        from jaxgd.distributed import initialize

        initialize(args.coordinator, args.num_processes, args.process_id)


def add_out_options(p: argparse.ArgumentParser, default_out: str, checkpoint_every: int) -> None:
    p.add_argument("--out", default=None, help=f"output directory (default {default_out})")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (refused if the options differ)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the jaxgd run in --out (its files are replaced only once the new run is done)")
    p.add_argument("--checkpoint-every", type=positive(int), default=checkpoint_every, dest="checkpoint_every",
                   help="epochs between checkpoints")


def resolve_model_options(args) -> None:
    """Fills the options not given with ``--model``'s defaults; refuses options that mean nothing for it."""
    defaults = MODEL_DEFAULTS[args.model]
    for name in ("hidden", "channels"):
        if getattr(args, name, None) is not None and defaults[name] is None:
            other = "channels" if name == "hidden" else "hidden"
            raise ValueError(f"--{name} has no meaning for --model {args.model} (it takes --{other}).")
    for name, value in defaults.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    if args.dataset == "digits" and args.data_dir is not None:
        raise ValueError("--data-dir has no effect with --dataset digits (the digits are embedded); drop one.")


def build_model(args, data):
    """The model ``--model`` names, sized for ``data``."""
    from jaxgd.mlp import MLP
    from jaxgd.models import CNN

    output = "softmax" if args.cost == "cross_entropy" else "sigmoid"
    if args.model == "cnn":
        return CNN(data.input_shape, data.num_classes, channels=args.channels, activation=args.activation)
    return MLP((data.input_dim, *args.hidden, data.num_classes), activation=args.activation, output=output)


def model_name(model) -> str:
    from jaxgd.mlp import MLP

    if isinstance(model, MLP):
        return "-".join(map(str, model.sizes))
    channels = getattr(model, "channels", None)
    return f"cnn {','.join(map(str, channels))}" if channels is not None else type(model).__name__


def _values(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def sweep_grid(args) -> dict:
    """The swept options (a comma list, or a JSON list replayed by ``rerun``), as hyperparameter -> values."""
    return {SWEPT[name]: _values(getattr(args, name)) for name in SWEPT
            if getattr(args, name, None) is not None and len(_values(getattr(args, name))) > 1}


def train_command(args) -> int:
    if args.deterministic:
        use_deterministic_kernels()
    if args.validation < 0:
        raise ValueError(f"--validation must be non-negative, got {args.validation}.")
    resolve_model_options(args)
    grid = sweep_grid(args)
    population = args.seeds > 1 or bool(grid)
    start_jax(args, population)
    import jax

    from jaxgd import distributed
    from jaxgd.config import TrainConfig
    from jaxgd.fingerprint import digest
    from jaxgd.mlp import MLP
    from jaxgd.models import describe
    from jaxgd.population import sweep
    from jaxgd.rundir import RunDir
    from jaxgd.train import check

    data = load_data(args)
    model = build_model(args, data)
    first = {name: _values(getattr(args, name))[0] if getattr(args, name) is not None else None for name in SWEPT}
    config = TrainConfig(cost=args.cost, optimizer=args.optimizer, learning_rate=first["lr"],
                         batch_size=args.batch_size, epochs=args.epochs, init=args.init, momentum=first["momentum"],
                         weight_decay=first["weight_decay"], schedule=args.schedule,
                         target_accuracy=args.target_accuracy, eval_every=args.eval_every,
                         gradient=args.gradient, matmul_precision=args.matmul_precision)
    config.validate(data.n_train)
    if args.gradient == "backprop":
        from jaxgd.backprop import check_backprop

        check_backprop(model, args.cost)
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
                  "options": {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_RECORDED}}
    if isinstance(model, MLP):
        run_config.update(sizes=list(model.sizes), activation=model.activation, output=model.output)
    mode = run_mode(args)
    check(key, model, data, config, metrics=list(args.metrics) or None, hyperparams=hyperparams)  # before --out
    out = Path(args.out or Path("runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    run_dir = RunDir(out, writer=distributed.is_writer())  # process 0 locks, checks and writes; all agree
    try:
        if distributed.from_process_zero(lambda: run_dir.open(mode, run_config, section="options").finished):
            if distributed.is_writer():
                print(f"jaxgd: {out} holds this run, finished and verified: nothing to resume.")
            return 0
        summary = train_into(run_dir.pending, args, data, model, config, key, hyperparams, members, run_config)
        distributed.from_process_zero(lambda: bool(run_dir.commit()))
    finally:
        run_dir.close()
    distributed.barrier("jaxgd run committed")
    if distributed.is_writer():
        print(summary + f" -> {out}")
    return 0


def train_into(work: Path, args, data, model, config, key, hyperparams, members, run_config) -> str:
    """Trains and writes the run's files into ``work`` (a run directory's ``.pending``); returns the summary."""
    import numpy as np

    from jaxgd import distributed, loggers, plots
    from jaxgd.mlp import MLP
    from jaxgd.models import num_params
    from jaxgd.results import environment, flatten_params, save_npz, write_json
    from jaxgd.train import fit

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
    model = result.model
    h = result.history
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
        from jaxgd.population import grouped_stats

        metrics["members"] = {"count": int(result.num_members), "labels": labels,
                              "hyperparams": result.hyperparams}
        metrics["groups"] = {name: grouped_stats(final[name], members.group, result.diverged, labels=members.groups)
                             for name in final}
    write_json(work / "metrics.json", metrics)
    save_npz(work / "params.npz", flatten_params(result.params))
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
    if members is None and result.diverged:
        print(f"jaxgd: warning: training diverged at epoch {int(result.diverged_epoch)} (training cost "
              f"{final['train_cost']:.4g}, initially {float(result.initial['train_cost']):.4g}); it stopped there. "
              f"Try a smaller --lr than {config.learning_rate}.", file=sys.stderr)
    head = (f"{data.name} {model_name(model)} {args.activation}/{config.cost} {config.optimizer} "
            f"batch={config.batch_size or 'full'}")
    timing = (f"{result.epochs_run} epochs in {result.wall_seconds:.1f} s (first epoch after "
              f"{result.first_epoch_seconds:.1f} s)")
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


def compare_runs(a: Path, b: Path, files=("metrics.json",), arrays=("params.npz",)) -> list[str]:
    """Differences between two run directories' result files, wall-clock fields aside (empty if none)."""
    import json

    import numpy as np

    def strip(obj):
        return {k: v for k, v in obj.items() if k not in WALL_CLOCK_FIELDS} if isinstance(obj, dict) else obj

    diffs = []
    for name in files:
        x, y = (strip(json.loads((d / name).read_text())) for d in (a, b))
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                diffs.append(f"{name}: {key} differs")
    for name in arrays:
        with np.load(a / name, allow_pickle=False) as fa, np.load(b / name, allow_pickle=False) as fb:
            for key in sorted(set(fa.files) | set(fb.files)):
                if key not in fa.files or key not in fb.files or fa[key].tobytes() != fb[key].tobytes():
                    diffs.append(f"{name}: {key} differs")
    return diffs


#: Environment fields whose differences ``jaxgd rerun`` reports beside its verdict.
PROVENANCE = ("jaxgd", "jax", "jaxlib", "optax", "numpy", "python", "backend", "device_kind", "device_count", "x64",
              "XLA_FLAGS")


def rerun_command(args) -> int:
    import json

    start_distributed(args)
    from jaxgd import distributed
    from jaxgd.rundir import read_manifest, verify

    run_dir = Path(args.run_dir)
    recorded = run_dir / "config.json"

    def inspect_run() -> dict:  # on process 0, which holds the run's files
        if not recorded.is_file():
            raise FileNotFoundError(f"{run_dir} holds no config.json: not a directory written by `jaxgd train`.")
        try:
            options = json.loads(recorded.read_text())["options"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{recorded} does not record the run's options ({e}).") from None
        out = Path(args.out) if args.out else _fresh(Path(f"{run_dir.resolve()}-rerun"))
        if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
            raise ValueError(f"rerun never writes into the run it checks: choose an --out outside {run_dir}.")
        if read_manifest(run_dir) is not None:
            return {"options": options, "out": str(out), "problems": verify(run_dir), "note": None}
        for name in ("metrics.json", "params.npz"):
            if not (run_dir / name).is_file():
                raise FileNotFoundError(f"{run_dir} has no {name}: the run did not finish (continue it with "
                                        f"`jaxgd train --resume --out {run_dir}` and its options).")
        return {"options": options, "out": str(out), "problems": [],
                "note": f"{run_dir} has no manifest (written by jaxgd 0.1): its files cannot be verified"}

    info = distributed.from_process_zero(inspect_run)
    writer = distributed.is_writer()
    if info["problems"]:
        if writer:
            print(f"jaxgd rerun: NOT reproduced: {run_dir} does not verify: {'; '.join(info['problems'])}",
                  file=sys.stderr)
        return 1
    if info["note"] and writer:
        print(f"jaxgd rerun: note: {info['note']}")
    options, out = info["options"], Path(info["out"])
    defaults = vars(build_parser().parse_args(["train"]))
    unknown = set(options) - set(defaults) - set(MODEL_DEFAULTS["mlp"])
    if unknown:
        raise ValueError(f"{recorded} has options this jaxgd does not know: {', '.join(sorted(unknown))}.")
    args_ = argparse.Namespace(**{**defaults, **options, "out": str(out), "resume": False, "overwrite": False,
                                  "quiet": True, "distributed": False, "coordinator": None})  # joined already
    for name in ("hidden", "channels", "metrics"):
        if getattr(args_, name, None) is not None:
            setattr(args_, name, tuple(getattr(args_, name)))
    if writer:
        print(f"jaxgd rerun: replaying {recorded} into {out}")
    train_command(args_)

    def verdict() -> int:
        for note in provenance_differences(run_dir, out):
            print(f"jaxgd rerun: note: {note}")
        diffs = compare_runs(run_dir, out)
        if diffs:
            print(f"jaxgd rerun: NOT reproduced: {'; '.join(diffs)}", file=sys.stderr)
            return 1
        print(f"jaxgd rerun: reproduced {run_dir}/metrics.json and params.npz exactly (wall-clock fields aside)")
        return 0

    return distributed.from_process_zero(verdict)


def _fresh(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... : the first that does not exist."""
    candidate, i = path, 1
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.name}-{i}")
    return candidate


def provenance_differences(a: Path, b: Path) -> list[str]:
    """Versions, platform and data that differ between two runs' records (``metrics.json``, ``config.json``)."""
    import json

    out = []
    try:
        env_a, env_b = (json.loads((d / "metrics.json").read_text()).get("environment", {}) for d in (a, b))
        conf_a, conf_b = (json.loads((d / "config.json").read_text()) for d in (a, b))
    except (OSError, ValueError):
        return ["the runs' records could not be read"]
    for field in PROVENANCE:
        if env_a.get(field) != env_b.get(field):
            out.append(f"{field} was {env_a.get(field)!r}, now {env_b.get(field)!r}")
    if conf_a.get("data_digest") != conf_b.get("data_digest"):
        out.append(f"the data differ: digest {conf_a.get('data_digest')} recorded, {conf_b.get('data_digest')} now")
    return out


def gradcheck_command(args) -> int:
    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from jaxgd.gradcheck import gradcheck, random_problem
    from jaxgd.mlp import MLP

    net = MLP(args.sizes, activation=args.activation, output=args.output)
    dtype = jnp.float32 if args.float32 else jnp.float64
    params, x, y = random_problem(net, jax.random.key(args.seed), args.batch, args.init, dtype)
    rows = gradcheck(net, args.cost, params, x, y)
    tol = 1e-4 if args.float32 else 1e-10
    print(f"gradcheck {'-'.join(map(str, net.sizes))} {net.activation}->{net.output}, {args.cost} cost, "
          f"batch {args.batch}, {jnp.dtype(dtype).name}: hand-written backprop vs jax.grad")
    print(f"{'layer':>5} {'param':>5} {'shape':>12} {'max abs diff':>14} {'max rel diff':>14}")
    for r in rows:
        print(f"{r['layer']:>5} {r['param']:>5} {'x'.join(map(str, r['shape'])):>12} "
              f"{r['max_abs_diff']:>14.3e} {r['max_rel_diff']:>14.3e}")
    worst = max(r["max_rel_diff"] for r in rows)
    ok = worst <= tol
    print(f"{'OK' if ok else 'MISMATCH'}: largest relative difference {worst:.3e} (tolerance {tol:g})")
    return 0 if ok else 1


COMMANDS = {"train": train_command, "rerun": rerun_command, "gradcheck": gradcheck_command}


def guarded(prog: str, body) -> int:
    """Runs ``body()``; bad input ends as one line on stderr and exit code 2, never a traceback."""
    try:
        return body()
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a read-only file system, no space left on the device, a file too large, ...
        where = f": {e.filename}" if e.filename else ""
        print(f"{prog}: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{prog}: error: out of memory; use fewer or smaller networks, or a smaller dataset", file=sys.stderr)
        return 2
    except Exception as e:  # XLA's own out-of-memory error, with the size it could not allocate
        if "RESOURCE_EXHAUSTED" not in str(e) and "Out of memory" not in str(e):
            raise
        message = next((l.strip() for l in str(e).splitlines() if "memory" in l.lower()), str(e).splitlines()[0])
        print(f"{prog}: error: out of memory: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    def body():
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args)

    return guarded("jaxgd", body)


if __name__ == "__main__":
    sys.exit(main())
