"""What both experiment scripts share: their common options, preset overrides and the run-and-write driver."""
from __future__ import annotations

import dataclasses
from pathlib import Path

#: Options every experiment takes, as (flag, config field).
TRAINING_FIELDS = ("activation", "cost", "optimizer", "learning_rate", "batch_size", "epochs", "seeds", "seed",
                   "max_members", "n_train", "data_dir")


def parser(prog: str, description: str, presets: dict, default_out: str):
    """A parser with ``--preset``, the data options and the training options every study shares."""
    from jaxgd.cli import Parser, add_data_options, add_out_options, positive

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
    add_out_options(p, default_out.format(preset="<preset>"), 10)
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
    """Parses, runs, commits ``results.json`` and the figures as one run directory (:mod:`jaxgd.rundir`),
    prints the table; bad input exits 2 in one line."""
    import json

    from jaxgd.cli import guarded, run_mode
    from jaxgd.results import to_jsonable, write_json
    from jaxgd.rundir import RunDir

    def body():
        args = parse_args(argv)
        if args.cpu_devices is not None:
            from jaxgd.sharding import use_cpu_devices

            use_cpu_devices(args.cpu_devices)  # before JAX's first computation
        config = make_config(args)
        out = Path(args.out or default_out.format(preset=args.preset))
        with RunDir(out).open(run_mode(args), to_jsonable(dataclasses.asdict(config))) as run_dir:
            if run_dir.finished:
                results = json.loads((out / "results.json").read_text())
            else:
                results = run(config, progress=not args.quiet, checkpoint=run_dir.pending / "checkpoints",
                              checkpoint_every=args.checkpoint_every)
                write_json(run_dir.pending / "results.json", results)
                figures(results, run_dir.pending)
                run_dir.commit()
        print(format_table(results))
        print(f"{results['wall_seconds']:.0f} s -> {out}/results.json and figures in {out}")
        return 0

    return guarded(prog, body)
