"""mlx-lm's TrainingCallback interface for DeRTa runs, so that its W&B and SwanLab reporters
(or any object with `on_train_loss_report` / `on_val_loss_report`) plug in as they do in
`mlx_lm.lora`. The dicts carry mlx-lm's keys, plus this trainer's two loss terms."""

from pathlib import Path
from typing import Callable, Optional

from derta_mlx.common.errors import UserError


def reporter_for(callback) -> Callable:
    """An `on_report` (trainer.Report) that forwards train and validation rows to `callback`."""

    def report(event) -> None:
        v = event.values
        if event.kind == "train":
            info = {"iteration": event.step, "train_loss": v["loss"], "learning_rate": v["learning_rate"],
                    "iterations_per_second": 1.0 / max(v["seconds_per_step"], 1e-9),
                    "tokens_per_second": v["tokens_per_sec"], "trained_tokens": v["trained_tokens"],
                    "peak_memory": v["peak_memory_gb"], "train_mle": v.get("mle"), "train_rto": v.get("rto")}
            callback.on_train_loss_report({k: x for k, x in info.items() if x is not None})
        elif event.kind == "val":
            info = {"iteration": event.step, "val_loss": v["val_loss"], "val_mle": v.get("val_mle"),
                    "val_rto": v.get("val_rto")}
            callback.on_val_loss_report({k: x for k, x in info.items() if x is not None})

    return report


def reporting_callback(report_to: Optional[str], project_name: Optional[str], run_dir: Path, config: dict):
    """mlx-lm's reporters named in `report_to` ("wandb", "swanlab", comma-separated), or None."""
    if not report_to:
        return None
    from mlx_lm.tuner.callbacks import get_reporting_callbacks

    try:
        return get_reporting_callbacks(report_to, project_name=project_name or run_dir.name, log_dir=str(run_dir),
                                       config=config)
    except ImportError as exc:
        raise UserError(f"report_to {report_to}: {exc} (pip install it, or drop report_to)") from None
    except ValueError as exc:
        raise UserError(f"report_to: {exc}") from None


def both(*reporters) -> Callable:
    """One on_report that calls each of `reporters` (None entries skipped)."""
    live = [r for r in reporters if r is not None]

    def report(event) -> None:
        for reporter in live:
            reporter(event)

    return report
