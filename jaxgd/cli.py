"""The ``jaxgd`` command: ``train`` and ``gradcheck`` (thin drivers over the library).

Bad options end with exit code 2 and one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import datetime
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
WALL_CLOCK_FIELDS = ("wall_seconds", "environment")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse would print the whole usage)
        raise UsageError(f"{self.prog}: {message}")


def _int_list(text: str) -> tuple[int, ...]:
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


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _batch_size(text: str):
    if text.lower() == "full":
        return None
    return _positive(int)(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None,
                   help="'digits' (embedded, the default), or a TFDS name: mnist, fashion_mnist, kmnist, cifar10, ...")
    # recorded absolute, so that `jaxgd rerun` and --resume find the data from any working directory
    p.add_argument("--data-dir", type=lambda v: str(Path(v).expanduser().resolve()), default=None,
                   help="a directory of IDX files (train-images-idx3-ubyte[.gz], ...); with --dataset, the TFDS data dir")
    p.add_argument("--n-train", type=_positive(int), default=None, help="use only the first N training examples")


def load_data(args):
    from jaxgd import data

    if args.data_dir is not None and not Path(args.data_dir).exists():
        raise FileNotFoundError(f"--data-dir {args.data_dir} does not exist.")
    name = args.dataset if args.dataset is not None else ("idx" if args.data_dir is not None else "digits")
    return data.load(name, data_dir=args.data_dir, n_train=args.n_train, validation=getattr(args, "validation", 0))


def build_parser() -> argparse.ArgumentParser:
    from jaxgd.config import MATMUL_PRECISIONS, OPTIMIZERS, SCHEDULES, TrainConfig
    from jaxgd.costs import COSTS
    from jaxgd.mlp import INITIALISERS

    d = TrainConfig()
    parser = _Parser(prog="jaxgd", description="How neural networks learn by gradient descent, in JAX.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("train", help="train a network (default: the lesson's, on the embedded digits)")
    add_data_options(t)
    t.add_argument("--hidden", type=_int_list, default=(16, 16), help="hidden widths, e.g. 16,16 (default)")
    t.add_argument("--activation", choices=("sigmoid", "tanh", "relu"), default="sigmoid")
    t.add_argument("--cost", choices=COSTS, default=d.cost)
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    t.add_argument("--lr", type=_positive(float), default=d.learning_rate, help="learning rate (default 3.0)")
    t.add_argument("--momentum", type=float, default=d.momentum)
    t.add_argument("--schedule", choices=SCHEDULES, default=None)
    t.add_argument("--batch-size", type=_batch_size, default=d.batch_size, help="minibatch size, or 'full'")
    t.add_argument("--epochs", type=_positive(int), default=d.epochs)
    t.add_argument("--init", choices=tuple(INITIALISERS), default=d.init)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--eval-every", type=_positive(int), default=1, help="evaluate every N epochs")
    t.add_argument("--target-accuracy", type=_fraction, default=None, help="stop at this training accuracy")
    t.add_argument("--validation", type=int, default=0, help="hold out N training examples for validation")
    t.add_argument("--gradient", choices=("autodiff", "backprop"), default="autodiff",
                   help="jax.grad or the hand-written backprop")
    t.add_argument("--matmul-precision", choices=MATMUL_PRECISIONS, default=d.matmul_precision,
                   help="float32 products everywhere (default), or the platform's faster default (TF32 on GPUs)")
    t.add_argument("--out", default=None, help="output directory (default runs/<timestamp>)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (refused if the options differ)")
    t.add_argument("--checkpoint-every", type=_positive(int), default=1, help="epochs between checkpoints (default 1)")
    add_deterministic_option(t)
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("rerun", help="train again from a finished run's config.json and compare the results")
    r.add_argument("run_dir", help="a directory written by `jaxgd train`")
    r.add_argument("--out", default=None, help="where the rerun goes (default RUN_DIR-rerun)")

    g = sub.add_parser("gradcheck", help="compare the hand-written backprop with jax.grad, layer by layer")
    g.add_argument("--sizes", type=_int_list, default=(784, 16, 16, 10), help="all widths, e.g. 784,16,16,10")
    g.add_argument("--activation", choices=("sigmoid", "tanh", "relu"), default="sigmoid")
    g.add_argument("--output", choices=("sigmoid", "softmax", "identity"), default="sigmoid")
    g.add_argument("--cost", choices=COSTS, default="quadratic")
    g.add_argument("--init", choices=tuple(INITIALISERS), default="normal")
    g.add_argument("--batch", type=_positive(int), default=32)
    g.add_argument("--seed", type=int, default=0)
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
_NOT_RECORDED = ("command", "out", "resume", "quiet", "checkpoint_every")


def prepare_out(out: Path, recorded: dict, resume: bool, section: str | None = None) -> Path:
    """The output directory of a run whose ``config.json`` will hold ``recorded``.

    With ``resume``, refuses a directory whose ``config.json`` (its ``section``, if given)
    differs from ``recorded``, naming the first field that differs; without it, removes old
    checkpoints so that the run starts afresh.
    """
    import json
    import shutil

    from jaxgd.checkpoint import first_difference

    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a directory.")
    config_file = out / "config.json"
    if resume and config_file.exists():
        try:
            saved = json.loads(config_file.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"--resume: cannot read {config_file} ({e}).") from None
        current = recorded if section is None else recorded[section]
        diff = first_difference(saved if section is None else saved.get(section, {}), current)
        if diff is not None:
            raise ValueError(f"--resume refused: {diff}; run with the same options or another --out.")
    elif not resume and (out / "checkpoints").exists():
        shutil.rmtree(out / "checkpoints")  # a new run in an old directory starts from scratch
    out.mkdir(parents=True, exist_ok=True)
    return out


def train_command(args) -> int:
    if args.deterministic:
        use_deterministic_kernels()
    import jax
    import numpy as np

    from jaxgd import plots
    from jaxgd.config import TrainConfig
    from jaxgd.mlp import MLP
    from jaxgd.results import environment, flatten_params, save_npz, write_json
    from jaxgd.train import fit

    if args.validation < 0:
        raise ValueError(f"--validation must be non-negative, got {args.validation}.")
    data = load_data(args)
    output = "softmax" if args.cost == "cross_entropy" else "sigmoid"
    net = MLP((data.input_dim, *args.hidden, data.num_classes), activation=args.activation, output=output)
    config = TrainConfig(cost=args.cost, optimizer=args.optimizer, learning_rate=args.lr,
                         batch_size=args.batch_size, epochs=args.epochs, init=args.init, momentum=args.momentum,
                         schedule=args.schedule, target_accuracy=args.target_accuracy, eval_every=args.eval_every,
                         gradient=args.gradient, matmul_precision=args.matmul_precision)
    config.validate(data.n_train)
    run_config = {"command": "train", "dataset": data.name, "data_dir": args.data_dir, "n_train": data.n_train,
                  "n_test": int(data.x_test.shape[0]), "sizes": list(net.sizes), "activation": net.activation,
                  "output": net.output, "seed": args.seed, "train": config.to_dict(),
                  # what `jaxgd rerun` replays: every option that changes the numbers
                  "options": {k: v for k, v in sorted(vars(args).items()) if k not in _NOT_RECORDED}}
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out, the directory of the run to continue.")
    out = prepare_out(Path(args.out or Path("runs") / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")),
                      run_config, args.resume, section="options")
    write_json(out / "config.json", run_config)

    result = fit(jax.random.key(args.seed), net, data, config, checkpoint=out / "checkpoints",
                 checkpoint_every=args.checkpoint_every, progress=not args.quiet)
    h = result.history
    metrics = {
        "train_accuracy": result.final("train_accuracy"), "test_accuracy": result.final("test_accuracy"),
        "train_cost": result.final("train_cost"), "test_cost": result.final("test_cost"),
        "epochs": result.epochs_run, "wall_seconds": result.wall_seconds, "num_params": net.num_params(),
        "diverged": bool(result.diverged), "diverged_epoch": int(result.diverged_epoch) if result.diverged else None,
        "initial": result.initial, "history": h, "environment": environment(),
    }
    write_json(out / "metrics.json", metrics)
    save_npz(out / "params.npz", flatten_params(result.params))
    title = f"{data.name}: {'-'.join(map(str, net.sizes))} {net.activation}, {config.cost}, {config.optimizer} lr={config.learning_rate}"
    plots.learning_curve(h, result.initial, out / "learning_curve.png", title=title)
    plots.weights_image(np.asarray(result.params[0]["w"]), data.image_shape, out / "weights.png",
                        title=f"what each first-layer neuron looks for ({data.name})")
    if result.diverged:
        print(f"jaxgd: warning: training diverged at epoch {int(result.diverged_epoch)} (training cost "
              f"{metrics['train_cost']:.4g}, initially {float(result.initial['train_cost']):.4g}); it stopped there. "
              f"Try a smaller --lr than {config.learning_rate}.", file=sys.stderr)
    print(f"{data.name} {'-'.join(map(str, net.sizes))} {net.activation}/{config.cost} {config.optimizer} "
          f"lr={config.learning_rate} batch={config.batch_size or 'full'}: {result.epochs_run} epochs in "
          f"{result.wall_seconds:.1f} s, train accuracy {metrics['train_accuracy']:.4f}, "
          f"test accuracy {metrics['test_accuracy']:.4f}, test cost {metrics['test_cost']:.4f} -> {out}")
    return 0


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


def rerun_command(args) -> int:
    import json

    run_dir = Path(args.run_dir)
    recorded = run_dir / "config.json"
    if not recorded.is_file():
        raise FileNotFoundError(f"{run_dir} holds no config.json: not a directory written by `jaxgd train`.")
    try:
        options = json.loads(recorded.read_text())["options"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{recorded} does not record the run's options ({e}).") from None
    for name in ("metrics.json", "params.npz"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} has no {name}: the run did not finish (continue it with "
                                    f"`jaxgd train --resume --out {run_dir}` and its options).")
    defaults = vars(build_parser().parse_args(["train"]))
    unknown = set(options) - set(defaults)
    if unknown:
        raise ValueError(f"{recorded} has options this jaxgd does not know: {', '.join(sorted(unknown))}.")
    args_ = argparse.Namespace(**{**defaults, **options, "out": args.out or f"{run_dir.resolve()}-rerun",
                                  "resume": False, "quiet": True})
    args_.hidden = tuple(args_.hidden)
    print(f"jaxgd rerun: replaying {recorded} into {args_.out}")
    train_command(args_)
    diffs = compare_runs(run_dir, Path(args_.out))
    if diffs:
        print(f"jaxgd rerun: NOT reproduced: {'; '.join(diffs)}", file=sys.stderr)
        return 1
    print(f"jaxgd rerun: reproduced {run_dir}/metrics.json and params.npz exactly (wall-clock fields aside)")
    return 0


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
