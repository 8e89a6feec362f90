"""The ``jaxgd`` command: ``train``, ``rerun`` and ``gradcheck``, one module each, over the library.

``options`` holds the options every command and study shares, ``startup`` what runs before JAX's
first computation, ``presets`` the models built by name, and ``guard`` how a command ends: bad
input as one line and exit code 2, a bug as an internal error with its traceback in a file (exit 1).
"""
from __future__ import annotations

import sys

from jaxgd.cli import gradcheck, rerun, train
from jaxgd.cli.guard import guarded
from jaxgd.cli.options import HelpFormatter, Parser

#: The commands, by name: each module's ``add_parser(sub)`` and ``command(args) -> exit code``.
COMMANDS = {"train": train, "rerun": rerun, "gradcheck": gradcheck}


def build_parser() -> Parser:
    parser = Parser(prog="jaxgd", description="How neural networks learn by gradient descent, in JAX.",
                    formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    def body():
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command].command(args)

    return guarded("jaxgd", body)


if __name__ == "__main__":
    sys.exit(main())
