"""`derta-mlx fuse` from start to end: check, fuse into a hidden directory, gate, publish.

Everything checkable is checked before the weights load. The fused model is written to a hidden
directory beside --out (staging.py); it is renamed into place, with its fuse.json, only when the
gate passes (or was skipped with --no-gate). A failed gate raises GateFailed and leaves nothing.
"""

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from derta_mlx.common.atomic import write_json
from derta_mlx.fuse import fusing, gate, staging
from derta_mlx.fuse.report import fuse_record, remedy
from derta_mlx.probe.model import read_adapter_config


@dataclass(frozen=True)
class FuseRequest:
    run_dir: str
    out: Optional[str] = None  # default: RUN-fused beside the run
    dequantize: bool = False
    group_size: Optional[int] = None
    gguf: Optional[str] = None
    data: Optional[str] = None
    benign: Optional[str] = None  # ordinary questions for the gate (default: the bundled held-out set)
    check: bool = True  # False: --no-gate
    tolerance: gate.Tolerance = field(default_factory=gate.Tolerance)
    gate_json: Optional[str] = None  # also write the gate's numbers here, passed or failed
    checkpoint: Optional[str] = None  # "best": the run's checkpoints/best (train --probe-every)


@dataclass
class FuseOutcome:
    out: Path
    record: dict  # what fuse.json holds


class GateFailed(Exception):
    """The fused model lost refusals (or helpfulness) beyond the tolerance: `gate` is result_json's
    dict, `remedy` what to try next."""

    def __init__(self, gate_json: dict, remedy: str):
        super().__init__("the fused model failed the gate")
        self.gate, self.remedy = gate_json, remedy


OVER_REFUSAL_REMEDY = ("The adapter itself over-refuses: the base model answered these. Retrain with borderline "
                       "rows in the data (the demo mix has derta_mlx/demo/borderline.jsonl), probe with --probe-every "
                       "and fuse --checkpoint best, or state a looser limit with --max-over-refusal / --max-answer-loss.")


def default_out(run_dir) -> Path:
    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(run_dir.name + "-fused")


def _no_bar(label, total, unit):
    return nullcontext()


def check_request(request: FuseRequest) -> None:
    """What needs no model: the run's adapter, --out and --gguf (a bad one fails at once)."""
    read_adapter_config(request.run_dir)
    if request.checkpoint:
        from derta_mlx.train.best import resolve_checkpoint

        resolve_checkpoint(request.run_dir, request.checkpoint)
    staging.check_out(Path(request.out) if request.out else default_out(request.run_dir))
    if request.gguf:
        staging.check_new_file(Path(request.gguf), "--gguf", ".gguf")


def run_fuse(request: FuseRequest, notify: Callable[[str], None], bar: Callable = _no_bar) -> FuseOutcome:
    check_request(request)
    source = fusing.read_run(request.run_dir, notify, request.checkpoint)
    out = Path(request.out) if request.out else default_out(request.run_dir)
    gguf = Path(request.gguf) if request.gguf else None
    if gguf:
        fusing.check_gguf_supported(source)
    if request.group_size is not None:
        fusing.check_group_size(source, request.group_size, request.dequantize)
    examples = gate.heldout_examples(source, request.data, notify) if request.check else []
    benign = gate.read_benign_file(request.benign) if request.check else None

    seconds = {}
    start = time.perf_counter()
    files = sorted(source.base_path.glob("*.safetensors"))
    with bar("Hashing the base weights", sum(f.stat().st_size for f in files) >> 20, "MB") as progress:
        base_hash = fusing.weights_sha256(source.base_path, progress)
    seconds["hash"] = round(time.perf_counter() - start, 1)

    with staging.building(out) as tmp:
        start = time.perf_counter()
        kind = "dequantised" if request.dequantize else (
            f"re-quantised at group size {request.group_size}" if request.group_size else
            "re-quantised as the base" if source.quantization else "unquantised, as the base")
        notify(f"Fusing {source.run_dir} into {source.base_path} ({kind})")
        with bar("Fusing adapter layers", 0, "layers") as progress:
            model, tokenizer, config = fusing.fuse_model(source, request.dequantize, request.group_size, progress)
        fusing.save_fused(model, tokenizer, config, source, tmp)
        quantization = config.get("quantization")
        del model, tokenizer
        seconds["fuse"] = round(time.perf_counter() - start, 1)

        result = None
        if request.check:
            start = time.perf_counter()
            adapter, base, template, refusal = gate.measure_adapter(source, examples, benign, notify, bar)
            fused = gate.measure_fused(tmp, template, refusal, examples, benign, notify, bar)
            result = gate.result_json(gate.compare(adapter, fused, request.tolerance, base))
            seconds["gate"] = round(time.perf_counter() - start, 1)
            if request.gate_json:
                write_json(request.gate_json, {**result, "out": None if not result["passed"] else str(out)})
            if not result["passed"]:
                helpfulness_only = set(result["lost"]) <= set(gate.helpfulness_losses(base, fused, request.tolerance))
                raise GateFailed(result, OVER_REFUSAL_REMEDY if helpfulness_only else
                                 remedy(quantization, request.dequantize))
        elif request.gate_json:
            write_json(request.gate_json, {"passed": None, "skipped": True, "out": str(out)})

        gguf_tmp = None
        if gguf:
            start = time.perf_counter()
            staging.remove_stale(gguf)
            gguf_tmp = staging.hidden_beside(gguf, ".gguf")
            notify(f"Writing the GGUF (f16, mlx-lm's exporter) to {gguf}")
            try:
                fusing.export_gguf(tmp, gguf_tmp)
            except BaseException:
                gguf_tmp.unlink(missing_ok=True)
                raise
            seconds["gguf"] = round(time.perf_counter() - start, 1)

        record = fuse_record(source, base_hash, result, request.dequantize, request.group_size, quantization, gguf,
                             request.data, request.benign, len(examples), seconds)
        write_json(tmp / "fuse.json", record)
        try:
            staging.publish(tmp, out)
            if gguf_tmp:
                staging.publish_file(gguf_tmp, gguf)
        finally:
            if gguf_tmp:
                gguf_tmp.unlink(missing_ok=True)
    return FuseOutcome(out, record)
