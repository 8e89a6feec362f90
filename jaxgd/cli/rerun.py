"""``jaxgd rerun RUN_DIR``: train again from a finished run's ``config.json`` and compare the results.

The run is replayed into a new directory (never into the one it checks) through ``jaxgd train``
itself; ``metrics.json`` and ``params.npz`` (and ``model_state.npz``, batch norm's statistics, where the
recorded run has it) must then be equal byte for byte, wall-clock fields
aside. Versions, platform and data that differ from the recorded run are reported beside the verdict.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from jaxgd.cli import options as opt
from jaxgd.cli import train
from jaxgd.cli.startup import start_distributed
from jaxgd.errors import InvalidArgument


def add_parser(sub) -> argparse.ArgumentParser:
    r = sub.add_parser("rerun", help="train again from a finished run's config.json and compare the results",
                       formatter_class=opt.HelpFormatter)
    r.add_argument("run_dir", help="a directory written by `jaxgd train`")
    r.add_argument("--out", default=None, help="a new directory for the rerun (default RUN_DIR-rerun, or -2, -3, ...)")
    opt.add_distributed_options(r)
    return r


def inspect_run(run_dir: Path, out: str | None) -> dict:
    """What a rerun of ``run_dir`` needs (on process 0, which holds the run's files): the recorded options,
    the directory to write, and what is wrong with the recorded run (empty when it verifies)."""
    from jaxgd.runs.rundir import read_manifest, verify

    recorded = run_dir / "config.json"
    if not recorded.is_file():
        raise FileNotFoundError(f"{run_dir} holds no config.json: not a directory written by `jaxgd train`.")
    try:
        options = json.loads(recorded.read_text())["options"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidArgument(f"{recorded} does not record the run's options ({e}).") from None
    target = Path(out) if out else fresh(Path(f"{run_dir.resolve()}-rerun"))
    if target.resolve() == run_dir.resolve() or run_dir.resolve() in target.resolve().parents:
        raise InvalidArgument(f"rerun never writes into the run it checks: choose an --out outside {run_dir}.")
    if read_manifest(run_dir) is not None:
        return {"options": options, "out": str(target), "problems": verify(run_dir), "note": None}
    for name in ("metrics.json", "params.npz"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} has no {name}: the run did not finish (continue it with "
                                    f"`jaxgd train --resume --out {run_dir}` and its options).")
    return {"options": options, "out": str(target), "problems": [],
            "note": f"{run_dir} has no manifest (written by jaxgd 0.1): its files cannot be verified"}


def replayed_args(options: dict, out: Path, recorded: Path) -> argparse.Namespace:
    """``jaxgd train``'s arguments from the recorded options, into ``out``: the options are turned back into a
    command line and parsed by ``jaxgd train``'s own parser, so that every value goes through the same
    types and checks as when it was typed (an edited value is refused naming its option)."""
    parser = opt.Parser(prog=f"jaxgd rerun: {recorded}")
    sub = parser.add_subparsers(dest="command", parser_class=opt.Parser)
    train.add_parser(sub)
    actions = {a.dest: a for a in sub.choices["train"]._actions if a.option_strings}
    argv = ["train"]
    for name, value in sorted(options.items()):
        action = actions.get(name)
        if action is None or name in train.NOT_RECORDED:
            raise InvalidArgument(f"{recorded} records an option this jaxgd train does not replay: {name!r}.")
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise InvalidArgument(f"{recorded} records {flag} as {value!r}; it is a flag (true or false).")
            argv += [flag] if value else []
        elif value is None:
            argv += [flag, "full"] if name == "batch_size" else []
        elif isinstance(value, list) and isinstance(action, argparse._AppendAction):
            for v in value:
                argv += [flag, str(v)]
        elif isinstance(value, list):
            if value:
                argv += [flag, ",".join(map(_text, value))]
        elif isinstance(value, (str, int, float)):
            argv += [flag, _text(value)]
        else:
            raise InvalidArgument(f"{recorded} records {flag} as {value!r:.60}, which is not an option's value.")
    args = parser.parse_args(argv)
    args.out, args.resume, args.overwrite, args.quiet = str(out), False, False, True
    args.distributed, args.coordinator = False, None  # joined already
    return args


def _text(value) -> str:
    """An option's value as it is typed (floats exactly, by ``repr``)."""
    if isinstance(value, bool):
        raise InvalidArgument(f"a value {value!r} where a number or a name was expected")
    return repr(value) if isinstance(value, float) else str(value)


def command(args) -> int:
    start_distributed(args)
    from jaxgd.parallel import distributed
    from jaxgd.runs.compare import compare_runs, provenance_differences
    from jaxgd.runs.rundir import STATE_FILE

    run_dir = Path(args.run_dir)
    info = distributed.from_process_zero(lambda: inspect_run(run_dir, args.out))
    writer = distributed.is_writer()
    if info["problems"]:
        if writer:
            print(f"jaxgd rerun: NOT reproduced: {run_dir} does not verify: {'; '.join(info['problems'])}",
                  file=sys.stderr)
        return 1
    if info["note"] and writer:
        print(f"jaxgd rerun: note: {info['note']}")
    out = Path(info["out"])
    if not isinstance(info["options"], dict):
        raise InvalidArgument(f"{run_dir / 'config.json'} records its options as {type(info['options']).__name__}, "
                              "not as a mapping of option names to values.")
    replay = replayed_args(info["options"], out, run_dir / "config.json")
    if writer:
        print(f"jaxgd rerun: replaying {run_dir / 'config.json'} into {out}")
    train.command(replay)

    def verdict() -> int:
        for note in provenance_differences(run_dir, out):
            print(f"jaxgd rerun: note: {note}")
        recorded_state = (run_dir / STATE_FILE).is_file()
        if (out / STATE_FILE).is_file() and not recorded_state:
            print(f"jaxgd rerun: note: {run_dir} predates {STATE_FILE} (batch norm's statistics): not compared")
        diffs = compare_runs(run_dir, out)
        if diffs:
            print(f"jaxgd rerun: NOT reproduced: {'; '.join(diffs)}", file=sys.stderr)
            return 1
        files = f"metrics.json, params.npz and {STATE_FILE}" if recorded_state else "metrics.json and params.npz"
        print(f"jaxgd rerun: reproduced {run_dir}/{files} exactly (wall-clock fields aside)")
        return 0

    return distributed.from_process_zero(verdict)


def fresh(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``, ... : the first that does not exist."""
    candidate, i = path, 1
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.name}-{i}")
    return candidate
