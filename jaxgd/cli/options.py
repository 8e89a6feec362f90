"""The command line's options, shared by every command and by the studies in ``experiments/``.

Each ``add_*`` function adds one group of options to a parser; the option types refuse a
bad value with one line (exit code 2) before anything starts. Choices are read from the
registries (activations, costs, optimizers), so a registered activation is offered by
every command and study alike.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from jaxgd.cli.startup import DETERMINISTIC_XLA_FLAGS, cache_dir
from jaxgd.errors import InvalidArgument, UsageError

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
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


def non_negative(text: str) -> float:
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


def not_swept(option: str, parse):
    """A single value; a comma list is refused: the option changes the compiled program, not a hyperparameter."""
    def parse_one(text: str):
        if "," in text:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {option} cannot be swept within one population (it changes the compiled program, "
                "not a hyperparameter of the optimizer); run one job per value")
        return parse(text)
    return parse_one


#: Options a comma list sweeps, and the optimizer hyperparameter each one sets per member.
SWEPT = {"lr": "learning_rate", "weight_decay": "weight_decay", "momentum": "momentum", "dropout": "dropout"}


def rate(text: str) -> float:
    """A dropout rate in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a dropout rate in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a dropout rate in [0, 1), got {text!r}")
    return value


def augmentation(text: str) -> str | None:
    """An augmentation such as ``crop:2,flip,noise:0.1`` (:mod:`jaxgd.data.augment`), checked by name and value,
    in the spelling that is recorded (``" crop:1 , flip"`` -> ``"crop:1,flip"``; ``""``: none)."""
    from jaxgd.data.augment import canonical

    try:
        return canonical(text)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def metric_names(text: str) -> tuple[str, ...]:
    import jaxgd.landscape  # noqa: F401  (registers "sharpness")
    from jaxgd.training.metrics import NAMED

    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [n for n in names if n not in NAMED]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected metric names from {', '.join(NAMED)}, got {text!r}")
    return names


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


def add_out_options(p: argparse.ArgumentParser, default_out: str, checkpoint_every: int) -> None:
    p.add_argument("--out", default=None, help=f"output directory (default {default_out})")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (refused if the options differ)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the jaxgd run in --out (its files are replaced only once the new run is done)")
    p.add_argument("--checkpoint-every", type=positive(int), default=checkpoint_every, dest="checkpoint_every",
                   help="epochs between checkpoints")


def run_mode(args) -> str:
    """``new``, ``resume`` or ``overwrite``: how a run treats its ``--out`` (see :mod:`jaxgd.runs.rundir`)."""
    if args.resume and getattr(args, "overwrite", False):
        raise InvalidArgument("--resume continues the run in --out and --overwrite replaces it: choose one.")
    if args.resume and args.out is None:
        raise InvalidArgument("--resume needs --out, the directory of the run to continue.")
    return "resume" if args.resume else "overwrite" if getattr(args, "overwrite", False) else "new"


#: The most CPU devices ``--cpu-devices`` makes: JAX starts a thread pool per device (100,000 of them took
#: gigabytes and minutes to start), and a population gains nothing from many more devices than cores.
MAX_CPU_DEVICES = 1024


def cpu_devices(text: str) -> int:
    value = positive(int)(text)
    if value > MAX_CPU_DEVICES:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_CPU_DEVICES} CPU devices, got {value}: JAX starts a thread pool per device, and a "
            "population gains nothing from many more devices than cores")
    return value


def add_machine_options(p: argparse.ArgumentParser, populations_only: bool = True) -> None:
    p.add_argument("--cpu-devices", type=cpu_devices, default=None, metavar="N", dest="cpu_devices",
                   help="on a CPU, make N JAX devices and spread a population's members over them (default: one "
                        "per core" + (" for populations" if populations_only else "") + ")")
    p.add_argument("--no-compilation-cache", action="store_false", dest="compilation_cache",
                   help=f"do not use JAX's persistent compilation cache (default: in {cache_dir()})")


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes (a jax.distributed job; see README, Many hosts)")
    g.add_argument("--distributed", action="store_true",
                   help="join a jax.distributed job: the cluster's environment (SLURM, TPU pods), jaxgd.parallel.launch's, "
                        "or the three options below")
    g.add_argument("--coordinator", metavar="HOST:PORT", default=None, help="process 0's address")
    g.add_argument("--num-processes", type=positive(int), default=None, metavar="N")
    g.add_argument("--process-id", type=int, default=None, metavar="I")


def add_deterministic_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--deterministic", action="store_true",
                   help=f"deterministic GPU kernels (XLA_FLAGS {' '.join(DETERMINISTIC_XLA_FLAGS)}); CPU runs are already")
