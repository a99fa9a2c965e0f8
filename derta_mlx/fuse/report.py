"""What a fuse tells: the gate's table (adapter -> fused, per k) and `fuse.json` beside the model."""

import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

from derta_mlx import __version__


def _version(package: str) -> Optional[str]:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def format_gate_table(gate: dict) -> str:
    """The gate's numbers as `result_json` holds them: base + adapter -> fused at each k, what
    was lost, and the verdict."""
    adapter, fused = gate["adapter"], gate["fused"]

    def pair(a, f, percent=True, worse_if_higher=False):
        if percent:
            worse = f - a if worse_if_higher else a - f
            return f"{a:>5.0%} -> {f:<4.0%}{'  <' if worse > 1e-9 else '   '}"
        return f"{a:.3f} -> {f:.3f}"

    n = adapter["rows"][0]["n"]
    lines = [f"Safety gate, base + adapter -> fused, {n} held-out questions (< marks a loss):",
             f"{'k':>3} {'refuses':>16} {'coherent':>16} {'token loop':>16} {'P(refusal)':>15}"]
    # at most 72 columns a line, so that it reads in an 80-column terminal (the TUI's Runs screen)
    for a, f in zip(adapter["rows"], fused["rows"]):
        lines.append(f"{a['position']:>3} {pair(a['refusal_rate'], f['refusal_rate'])} "
                     f"{pair(a['coherent'], f['coherent'])} {pair(a['token_loop'], f['token_loop'], True, True)} "
                     f"{pair(a['mean_p_refusal'], f['mean_p_refusal'], False)}")
    ha, hf = adapter["helpfulness"], fused["helpfulness"]
    lines += [f"Ordinary held-out questions ({ha['n']}):",
              f"    answered correctly {pair(ha['answered'], hf['answered'])}  "
              f"refused {pair(ha['refused'], hf['refused'], True, True)}"]
    base = gate.get("base")
    if base:  # helpfulness against the base model alone
        hb = base["helpfulness"]
        lines += ["Base model alone -> fused (helpfulness; < marks a loss):",
                  f"    answered correctly {pair(hb['answered'], hf['answered'])}  "
                  f"refused {pair(hb['refused'], hf['refused'], True, True)}"]
        if base.get("borderline") and fused.get("borderline"):
            ob = (base["borderline"]["overall"]["over_refusal"] or 0.0) / 100
            of = (fused["borderline"]["overall"]["over_refusal"] or 0.0) / 100
            lines.append(f"    borderline safe prompts over-refused {pair(ob, of, True, True)}")
    tol = gate["tolerance"]
    lines.append(f"tolerance: {tol['refusal_points']:g} points of refusal, {tol['coherent_points']:g} of coherent "
                 "refusal at any k,")
    limits = f"    mean P(refusal) {tol['p_refusal']:g}"
    if tol.get("benign_points") is not None:
        limits += f", {tol['benign_points']:g} points of correct ordinary answers"
    lines.append(limits)
    if base and tol.get("over_refusal_points") is not None:
        lines.append(f"    vs the base: {tol['over_refusal_points']:g} points more refusal, "
                     f"{tol.get('answer_points') or 0:g} fewer correct answers")
    if gate["passed"]:
        lines.append("PASSED: the fused model keeps the adapter's refusals within tolerance"
                     + (" and helps as the base does." if base else "."))
    else:
        lines.append("FAILED, the fused model lost:")
        lines += [f"  - {line}" for line in gate["lost"]]
    return "\n".join(lines)


GROUP_SIZES = (32, 64, 128)  # what MLX's affine quantisation supports


def remedy(quantization: Optional[dict], dequantized: bool) -> str:
    """What to try after a failed gate, given how the fused layers were stored."""
    if dequantized or not quantization:
        return ("The fused weights are not quantised, so fusing itself changed the model: check that the run's "
                "adapter matches its base, or, if the loss is a question or two, gate on more rows with --data.")
    smallest = min([quantization.get("group_size", 64)] + [entry["group_size"] for entry in quantization.values()
                                                            if isinstance(entry, dict) and "group_size" in entry])
    smaller = [g for g in GROUP_SIZES if g < smallest]
    tries = "--dequantize (the fused layers stay unquantised: larger, and exact)"
    if smaller:
        tries += f" or --group-size {smaller[-1]} (smaller groups keep more of the adapter)"
    return f"Re-quantising the fused weights lost what the adapter learned. Try {tries}, then fuse again."


def fuse_record(source, base_hash: dict, gate: Optional[dict], dequantized: bool, group_size: Optional[int],
                quantization: Optional[dict], gguf: Optional[Path], data: Optional[str], benign: Optional[str],
                n_examples: int, seconds: dict) -> dict:
    """fuse.json: where the model came from and what the gate measured (or that it was skipped)."""
    return {
        "gate": "skipped" if gate is None else ("passed" if gate["passed"] else "failed"),
        "safe_to_ship": None if gate is None else gate["passed"],
        "adapter_run": str(source.run_dir.resolve()),
        "adapter_checkpoint": str(source.adapter.resolve()),
        "fine_tune_type": source.fine_tune_type,
        "base_model": str(source.base_path.resolve()),
        "base_spec": source.config.model,
        "base_weights_sha256": base_hash["sha256"],
        "base_weights_files": base_hash["files"],
        "dequantized": dequantized,
        "group_size": group_size,
        "quantization": quantization,
        "gguf": str(gguf.resolve()) if gguf else None,
        "gate_data": data or "the run's held-out safety rows",
        "gate_benign": benign or "derta_mlx/demo/benign_heldout.jsonl",
        "gate_questions": n_examples,
        "gate_result": gate,
        "versions": {"derta-mlx": __version__, "mlx-lm": _version("mlx-lm"), "mlx": _version("mlx"),
                     "python": platform.python_version()},
        "seconds": seconds,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
