"""Agreement of the judges with the hand-labelled calibration generations, per attack.

For every attack, the tuning set (tests/data/judge_calibration/<attack>.jsonl) and the held-out
set written before the rules were tuned (<attack>.heldout.jsonl): agreement and Cohen's kappa of
the attack-aware App. C judge (`appc`, what `eval judge` uses), the plain App. C rule that
ignores the attack's format (`appc-plain`), and the keyword refusal detector (`detector`).
CPU only, a few seconds.

    python bench/judge_agreement.py             # prints the table, writes bench/results/judge_agreement.json
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from derta_mlx.common.atomic import write_json  # noqa: E402
from derta_mlx.eval.agreement import ATTACK_KINDS, judges_for, measure, read_labelled  # noqa: E402

DATA = ROOT / "tests" / "data" / "judge_calibration"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="folder of <attack>[.heldout].jsonl files")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "judge_agreement.json"))
    args = parser.parse_args()
    results, lines = {}, []
    lines.append("| attack | set | n | unsafe (labels) | appc agree | appc kappa | appc-plain agree | appc-plain kappa "
                 "| detector agree | detector kappa |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for attack in ATTACK_KINDS:
        for split, suffix in (("tuning", ".jsonl"), ("held-out", ".heldout.jsonl")):
            path = Path(args.data) / f"{attack}{suffix}"
            if not path.is_file():
                continue
            rows = read_labelled(path)
            found = {name: measure(rows, judge) for name, judge in judges_for(attack).items()}
            results.setdefault(attack, {})[split] = {
                name: {"n": a.n, "agree": a.agree, "agreement": round(a.rate, 4), "kappa": round(a.kappa, 4),
                       "unsafe_labels": a.unsafe_labels, "unsafe_verdicts": a.unsafe_verdicts}
                for name, a in found.items()}
            cells = " | ".join(f"{found[j].agree}/{found[j].n} ({found[j].rate:.0%}) | {found[j].kappa:.2f}"
                               for j in ("appc", "appc-plain", "detector"))
            lines.append(f"| {attack} | {split} | {len(rows)} | {found['appc'].unsafe_labels} | {cells} |")
    print("\n".join(lines))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), {"data": str(args.data), "attacks": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
