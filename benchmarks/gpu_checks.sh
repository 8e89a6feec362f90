#!/usr/bin/env bash
# The GPU checks recorded in benchmarks/README.md, run on a lent GPU machine from the repository root:
# the benchmark (torch peers on the same GPU), GPU-relevant tests, and run-to-run determinism of
# `jaxgd train` and a population with and without --deterministic. Logs and JSON go to $OUT.
set -uo pipefail
OUT=${OUT:-runs/gpu}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_checks.log") 2>&1
nvidia-smi -L
python3 -c "import jax, jaxlib, optax, torch; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices(), 'torch', torch.__version__, torch.cuda.is_available())"

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

timeout 240 python3 -m pytest -q -x -p no:cacheprovider tests/test_dense.py tests/test_population.py tests/test_checkpoint.py 2>&1 | tail -5

timeout 300 python3 -m benchmarks.train_speed --no-memory --out "$OUT/train_speed_gpu.json" | tail -40
