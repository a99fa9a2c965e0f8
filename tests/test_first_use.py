"""First use of the embedded model by two processes at once: converted once, both get it."""

import subprocess
import sys

import pytest

CONVERT = ("import sys; from pathlib import Path; from derta_mlx.models.embedded import ensure_embedded; "
           "print(ensure_embedded(Path(sys.argv[1]), notify=print))")


@pytest.mark.slow
def test_two_processes_converting_at_once_convert_once(tmp_path):
    out = tmp_path / "models" / "smollm2"
    procs = [subprocess.Popen([sys.executable, "-c", CONVERT, str(out)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    assert [code for _, _, code in results] == [0, 0], [err[-2000:] for _, err, _ in results]
    assert sum("First use: converting" in stdout for stdout, _, _ in results) == 1
    assert all(stdout.strip().endswith(str(out)) for stdout, _, _ in results)
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [".smollm2.lock", "smollm2"]  # no half-made folder
