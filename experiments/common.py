"""What both experiment scripts share: their common options, preset overrides and the run-and-write driver."""
from __future__ import annotations

import dataclasses
from pathlib import Path

#: Options every experiment takes, as (flag, config field).
TRAINING_FIELDS = ("activation", "cost", "optimizer", "learning_rate", "batch_size", "epochs", "seeds", "seed",
                   "max_members", "n_train", "data_dir")


def parser(prog: str, description: str, presets: dict, default_out: str):
    """A parser with ``--preset``, the data options and the training options every study shares."""
    from jaxgd.cli import Parser, positive, add_data_options

    p = Parser(prog=prog, description=description)
    p.add_argument("--preset", choices=tuple(presets), default=next(iter(presets)))
    add_data_options(p)
    p.add_argument("--activation", choices=("sigmoid", "tanh", "relu"))
    p.add_argument("--cost", choices=("quadratic", "cross_entropy"))
    from jaxgd.config import OPTIMIZERS

    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--lr", type=positive(float), dest="learning_rate")
    p.add_argument("--batch-size", type=positive(int), dest="batch_size")
    p.add_argument("--epochs", type=positive(int))
    p.add_argument("--seeds", type=positive(int))
    p.add_argument("--seed", type=int)
    p.add_argument("--max-members", type=positive(int), dest="max_members",
                   help="train at most this many networks per program")
    p.add_argument("--out", default=None, help=f"output directory (default {default_out.format(preset='<preset>')})")
    p.add_argument("--resume", action="store_true",
                   help="continue the study in --out from its checkpoints: finished conditions are not trained again")
    p.add_argument("--checkpoint-every", type=positive(int), default=10, dest="checkpoint_every",
                   help="epochs between checkpoints (default 10)")
    p.add_argument("--cpu-devices", type=positive(int), default=None, metavar="N", dest="cpu_devices",
                   help="on a CPU, make N JAX devices and spread the seeds over them (N = cores is fastest; "
                        "default: JAX's one CPU device)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args, presets: dict, fields: tuple[str, ...]):
    """The preset named by ``--preset`` with every option given on the command line applied."""
    changes = {k: getattr(args, k) for k in TRAINING_FIELDS + fields if getattr(args, k, None) is not None}
    if args.dataset is not None or args.data_dir is not None:
        changes["dataset"] = args.dataset  # None with --data-dir: read IDX files
    return dataclasses.replace(presets[args.preset], **changes)


def main(prog: str, argv, parse_args, make_config, run, figures, format_table, default_out: str) -> int:
    """Parses, runs, writes ``results.json`` and the figures, prints the table; bad input exits 2 in one line."""
    from jaxgd.cli import guarded, prepare_out
    from jaxgd.results import to_jsonable, write_json

    def body():
        args = parse_args(argv)
        if args.cpu_devices is not None:
            from jaxgd.sharding import use_cpu_devices

            use_cpu_devices(args.cpu_devices)  # before JAX's first computation
        config = make_config(args)
        out = prepare_out(Path(args.out or default_out.format(preset=args.preset)),
                          to_jsonable(dataclasses.asdict(config)), args.resume)
        write_json(out / "config.json", dataclasses.asdict(config))
        results = run(config, progress=not args.quiet, checkpoint=out / "checkpoints",
                      checkpoint_every=args.checkpoint_every)
        write_json(out / "results.json", results)
        figures(results, out)
        print(format_table(results))
        print(f"{results['wall_seconds']:.0f} s -> {out}/results.json and figures in {out}")
        return 0

    return guarded(prog, body)
