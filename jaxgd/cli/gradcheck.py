"""``jaxgd gradcheck``: the hand-written backprop against ``jax.grad``, layer by layer, in float64."""
from __future__ import annotations

import argparse

from jaxgd.cli import options as opt


def add_parser(sub) -> argparse.ArgumentParser:
    from jaxgd.costs import COSTS
    from jaxgd.mlp import INITIALISERS

    g = sub.add_parser("gradcheck", help="compare the hand-written backprop with jax.grad, layer by layer",
                       formatter_class=opt.HelpFormatter)
    g.add_argument("--sizes", type=opt.int_list, default=(784, 16, 16, 10), help="all widths, e.g. 784,16,16,10")
    g.add_argument("--activation", choices=("sigmoid", "tanh", "relu"), default="sigmoid")
    g.add_argument("--output", choices=("sigmoid", "softmax", "identity"), default="sigmoid")
    g.add_argument("--cost", choices=COSTS, default="quadratic")
    g.add_argument("--init", choices=tuple(INITIALISERS), default="normal")
    g.add_argument("--batch", type=opt.positive(int), default=32)
    g.add_argument("--seed", type=int, default=0, help="key of the random network and batch")
    g.add_argument("--float32", action="store_true", help="compare in float32 instead of float64")
    return g


def command(args) -> int:
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
