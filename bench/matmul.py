"""float32 and 4-bit matmul throughput with MLX's bundled BLAS and with the system OpenBLAS.

Each variant runs in its own subprocess (a BLAS can only be preloaded at start-up), one after
the other in one invocation, and the table gives the ratio. Example:

    python bench/matmul.py --size 1024 --json bench/results/matmul.json
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEASURE = r"""
import json, sys, time
import mlx.core as mx
n = int(sys.argv[1])
a = mx.random.normal((n, n)); b = mx.random.normal((n, n)); mx.eval(a, b)
wq, scales, biases = mx.quantize(b, group_size=64, bits=4); mx.eval(wq, scales, biases)
def rate(fn, reps=8):
    for _ in range(2): mx.eval(fn())
    start = time.perf_counter()
    for _ in range(reps): mx.eval(fn())
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9
print(json.dumps({
    "float32": rate(lambda: a @ b),
    "4bit": rate(lambda: mx.quantized_matmul(a, wq, scales, biases, transpose=True, group_size=64, bits=4)),
}))
"""


def run(size: int, preload) -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    out = subprocess.run([sys.executable, "-c", MEASURE, str(size)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    from derta_mlx.backend import find_openblas

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "matmul.json"))
    args = parser.parse_args()
    library = find_openblas()
    results = {"size": args.size, "reference": run(args.size, None)}
    if library:
        results["openblas"] = run(args.size, library)
        results["openblas_library"] = library
    print(f"{'GFLOP/s, n=' + str(args.size):<16} {'bundled BLAS':>12} {'OpenBLAS':>10} {'ratio':>7}")
    for kind in ("float32", "4bit"):
        ref = results["reference"][kind]
        fast = results.get("openblas", {}).get(kind)
        print(f"{kind:<16} {ref:>12.1f} {fast if fast else float('nan'):>10.1f} "
              f"{(fast / ref) if fast else float('nan'):>6.1f}x")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
