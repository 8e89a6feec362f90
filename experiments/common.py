"""What both experiment scripts share: preset overrides, the error boundary and writing results."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path


def config_from_args(args, presets: dict, fields: tuple[str, ...]):
    """The preset named by ``--preset`` with every option given on the command line applied."""
    changes = {k: getattr(args, k) for k in fields if getattr(args, k, None) is not None}
    if args.dataset is not None or args.data_dir is not None:
        changes["dataset"] = args.dataset  # None with --data-dir: read IDX files
    return dataclasses.replace(presets[args.preset], **changes)


def main(prog: str, argv, parse_args, make_config, run, figures, format_table, default_out: str) -> int:
    """Parses, runs, writes ``results.json`` and the figures, prints the table; bad input exits 2 in one line."""
    from jaxgd.cli import USER_ERRORS, UsageError
    from jaxgd.results import write_json

    try:
        args = parse_args(argv)
        config = make_config(args)
        out = Path(args.out or default_out.format(preset=args.preset))
        results = run(config, progress=not args.quiet)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    figures(results, out)
    print(format_table(results))
    print(f"{results['wall_seconds']:.0f} s -> {out}/results.json and figures in {out}")
    return 0
