"""float32 and 4-bit matmul throughput with MLX's bundled BLAS and with each fast BLAS installed
here: the system OpenBLAS, Intel's MKL wheel, cmeel's OpenBLAS wheel.

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

from derta_mlx.common.atomic import write_json  # noqa: E402  (results are written atomically)

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
def kernel():
    # which BLAS kernel runs: what threadpoolctl reports, else the same calls it makes
    try:
        from threadpoolctl import threadpool_info
        found = [f"{i['internal_api']} {i.get('architecture') or i['version']}" for i in threadpool_info()
                 if i["user_api"] == "blas" and "numpy" not in i["filepath"]]
        if found:
            return found[0]
    except ImportError:
        pass
    import ctypes
    lib = ctypes.CDLL(None)
    try:
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return "openblas " + lib.openblas_get_corename().decode()
    except AttributeError:
        pass
    try:
        buf = ctypes.create_string_buffer(256)
        lib.mkl_get_version_string(buf, 256)
        return buf.value.decode().strip()
    except AttributeError:
        return "MLX's bundled reference BLAS"
print(json.dumps({
    "float32": rate(lambda: a @ b),
    "4bit": rate(lambda: mx.quantized_matmul(a, wq, scales, biases, transpose=True, group_size=64, bits=4)),
    "kernel": kernel(),
}))
"""


def run(size: int, preload, unpin: bool = False) -> dict:
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    if unpin:  # this benchmark's own processes only: both settings go together, never one alone
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(size)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    from derta_mlx.accel.blas import (
        _CANDIDATES,
        _WHEELS,
        _loads,
        _wheel_library,
        pinned_older_kernels,
    )

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "matmul.json"))
    args = parser.parse_args()
    system = next((c for c in _CANDIDATES if Path(c).exists()), None)
    variants = {"bundled BLAS": None}  # then the wheels the CLI would preload, then the system's
    variants.update({f"{name} wheel": _wheel_library(dist, stem) for dist, stem, name in _WHEELS})
    variants["system OpenBLAS"] = system
    pinned = pinned_older_kernels()  # the environment pins older kernels on an AVX-512 CPU
    if pinned and system:
        variants["system, unpinned"] = system
        print(f"the 'system, unpinned' variant unsets OPENBLAS_CORETYPE (={pinned}) and OPENBLAS_L2_SIZE "
              "together, in this benchmark's own subprocess only; OpenBLAS then picks its kernel itself")
    results = {"size": args.size, "libraries": variants, "gflops": {},
               "coretype_in_environment": os.environ.get("OPENBLAS_CORETYPE")}
    for name, library in variants.items():
        if library and not _loads(library):
            print(f"skipping {name}: {library} does not load here (missing libgfortran.so.5?)")
        elif name == "bundled BLAS" or library:
            results["gflops"][name] = run(args.size, library, unpin=name == "system, unpinned")
    names = list(results["gflops"])
    print(f"{'GFLOP/s, n=' + str(args.size):<16}" + "".join(f"{n:>17}" for n in names) + "   best/bundled")
    for kind in ("float32", "4bit"):
        values = [results["gflops"][n][kind] for n in names]
        print(f"{kind:<16}" + "".join(f"{v:>17.1f}" for v in values) + f"   {max(values) / values[0]:>11.1f}x")
    for name in names:
        print(f"  {name}: {results['gflops'][name]['kernel']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, results)


if __name__ == "__main__":
    main()
