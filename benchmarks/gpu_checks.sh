#!/usr/bin/env bash
# The GPU checks recorded in benchmarks/README.md, run on a lent GPU machine from the repository root:
# matmul precision (a population member against the same network trained alone, in float32 and in the
# platform's default precision), GPU-relevant tests, the benchmark (torch peers on the same GPU), and
# run-to-run determinism of `jaxgd train` and a population with and without --deterministic.
# Logs and JSON go to $OUT. Arguments name the parts to run (default: all of them):
#   precision  a member against its network trained alone, and the cost of float32 products
#   tests      GPU-relevant tests
#   bench      python -m benchmarks.train_speed --no-memory
#   determinism  run-to-run determinism and jaxgd rerun
set -uo pipefail
PARTS=${*:-precision tests bench determinism}
part() { [[ " $PARTS " == *" $1 "* ]]; }
OUT=${OUT:-runs/gpu}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_checks.log") 2>&1
nvidia-smi -L
python3 -c "import jax, jaxlib, optax, torch; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices(), 'torch', torch.__version__, torch.cuda.is_available())"

precision='import jax, numpy as np, jaxgd
d = jaxgd.data.load("digits", n_train=400)  # as the tests small_digits fixture
net, keys = jaxgd.MLP((64, 16, 10)), jax.random.split(jax.random.key(1), 3)
diff = lambda a, b: max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
for p in ("float32", "default"):
    for order in ("shared", "per_seed"):
        c = jaxgd.TrainConfig(epochs=3, data_order=order, matmul_precision=p)
        full = jax.tree.map(lambda a: a[2], jaxgd.fit(keys, net, d, c).params)
        # what tests/test_population.py compares: a shared order against a population of one member
        # (the same shared order), a per-seed order against its key trained alone
        alone = jaxgd.fit(keys[2:] if order == "shared" else keys[2], net, d, c).params
        alone = jax.tree.map(lambda a: a[0], alone) if order == "shared" else alone
        print(f"matmul_precision={p} {order}, 3 epochs: member 2 of 3 vs trained alone: max |param diff| {diff(full, alone):.2e}")'
cost='from benchmarks import common
from benchmarks.train_speed import jaxgd_seconds_per_epoch
x, y = common.mnist_shaped()
data = {"x_train": x, "y_train": y, "x_test": x[:1000], "y_test": y[:1000]}
for p in ("float32", "default"):
    rate = common.matmul_rate(2048, p)["jax"] / 1e9
    ms = [jaxgd_seconds_per_epoch(data, s, "shared", b, None, matmul_precision=p) / s * 1e3 for s, b in ((1, 10), (100, 100))]
    print(f"matmul_precision={p}: 2048 x 2048 matmul {rate:,.0f} GFLOP/s; ms per seed-epoch: 1 seed batch 10 {ms[0]:.2f}, 100 shared seeds batch 100 {ms[1]:.3f}")'
if part precision; then
    timeout 120 python3 -c "$precision"
    timeout 150 python3 -c "$cost"
fi

part tests && timeout 300 python3 -m pytest -q -rf --tb=line -p no:cacheprovider tests/test_dense.py tests/test_population.py \
    tests/test_checkpoint.py tests/test_permutation.py tests/test_deferred.py \
    tests/test_train.py::test_matmul_precision_reaches_every_product_of_training_and_evaluation 2>&1 | tail -12

part bench && timeout 300 python3 -m benchmarks.train_speed --no-memory --out "$OUT/train_speed_gpu.json" | tail -40

part determinism || exit 0
same() {  # same RUN_A RUN_B: are params and metrics identical, wall-clock fields aside?
    python3 -c "import sys; from pathlib import Path; from jaxgd.cli import compare_runs; d = compare_runs(Path(sys.argv[1]), Path(sys.argv[2])); print('identical' if not d else 'DIFFER: ' + '; '.join(d[:4]))" "$1" "$2"
}
for flag in "" "--deterministic"; do
    for run in a b; do
        python3 -m jaxgd train --epochs 5 --quiet $flag --out "$RUNS/train$flag-$run" | tail -1
    done
    echo "jaxgd train twice ${flag:-(default flags)}: $(same "$RUNS/train$flag-a" "$RUNS/train$flag-b")"
done
population='import sys, jax, numpy as np, jaxgd
d = jaxgd.data.load("digits")
f = lambda: jaxgd.fit(jax.random.split(jax.random.key(0), 100), jaxgd.MLP((64, 16, 16, 10)), d, jaxgd.TrainConfig(epochs=5))
a, b = f(), f()
same = all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
print("population of 100 trained twice", sys.argv[1], "identical" if same else "DIFFER")'
python3 -c "$population" "(default flags)"
XLA_FLAGS="--xla_gpu_deterministic_ops=true" python3 -c "$population" "(--xla_gpu_deterministic_ops=true)"
python3 -m jaxgd rerun "$RUNS/train--deterministic-a" --out "$RUNS/rerun" | tail -1
python3 -m jaxgd train --epochs 20 --quiet --lr 1000 --out "$RUNS/lr1000" 2>&1 | tail -2
