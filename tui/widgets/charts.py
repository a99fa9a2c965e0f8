"""Line charts on textual-plotext: training losses per term, and P(refusal) over positions."""

import math
from typing import Dict, List, Optional, Sequence

from textual_plotext import PlotextPlot


def _finite(value) -> bool:
    """A plottable number (numpy's included); None, NaN and inf are not."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class LossChart(PlotextPlot):
    """Loss, MLE and RTO terms against the step, from metrics.jsonl rows."""

    TERMS = (("loss", "loss"), ("mle", "MLE"), ("rto", "RTO"), ("val_loss", "val"))

    def on_mount(self) -> None:
        self.show_rows([])

    def show_rows(self, rows: List[dict]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("loss per term")
        plt.xlabel("step")
        for key, label in self.TERMS:
            # plotext cannot scale an axis to inf: a diverged run's last rows are left off the chart
            points = [(r["step"], r[key]) for r in rows if _finite(r.get(key))]
            if points:
                plt.plot([p[0] for p in points], [p[1] for p in points], label=label, marker="braille")
        self.refresh()


class CurveChart(PlotextPlot):
    """Teacher-forced P(refusal) after k harmful tokens, one line per variant, and the cursor."""

    def on_mount(self) -> None:
        self.show_curves({})

    def show_curves(self, curves: Dict[str, Sequence[float]], cursor: Optional[int] = None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("P(refusal) after k harmful tokens")
        plt.xlabel("k")
        plt.ylim(0, 1)
        for label, curve in curves.items():
            points = [(k, float(v)) for k, v in enumerate(curve) if _finite(v)]
            if points:
                plt.plot([k for k, _ in points], [v for _, v in points], label=label, marker="braille")
        if cursor is not None and curves:
            plt.vline(cursor, "red")
        self.refresh()
