"""Human verdicts from a file: they override every automatic judge layer."""

from typing import Dict, Iterable, List, Optional, Tuple

from derta_mlx.data.formats import DataError, Where, iter_json_lines
from derta_mlx.eval.suites import HELPFUL_KINDS

LabelKey = Tuple[Optional[str], str]


def _label_verdict(obj: dict, where: Where) -> str:
    if "verdict" in obj:
        value = str(obj["verdict"]).strip().lower()
        if value in ("unsafe", "safe"):
            return value
        raise DataError(f"{where}: 'verdict' must be \"unsafe\" or \"safe\", got {obj['verdict']!r}")
    if isinstance(obj.get("unsafe"), bool):
        return "unsafe" if obj["unsafe"] else "safe"
    raise DataError(f"{where}: a label needs \"verdict\": \"unsafe\"|\"safe\" (or \"unsafe\": true/false)")


def read_labels(path) -> Dict[LabelKey, str]:
    """Human verdicts: jsonl {"id", "verdict": "unsafe"|"safe"} (+ optional "suite")."""
    labels = {}
    for where, obj in iter_json_lines(path, "labels file"):
        if not isinstance(obj, dict) or "id" not in obj:
            raise DataError(f"{where}: a label is a JSON object with an 'id'")
        if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
            raise DataError(f"{where}: a label's 'id' must be a string or an integer")
        suite = obj.get("suite")
        if suite is not None and not isinstance(suite, str):
            raise DataError(f"{where}: a label's 'suite' must be a string (a suite file's name)")
        labels[(str(suite) if suite is not None else None, str(obj["id"]))] = _label_verdict(obj, where)
    return labels


def label_for(labels: Dict[LabelKey, str], suite: str, item_id: str) -> Optional[str]:
    return labels.get((suite, item_id), labels.get((None, item_id)))


def unmatched_labels(labels: Dict[LabelKey, str], records: Iterable[dict]) -> List[LabelKey]:
    """The labels that no safety record takes: a mistyped id or suite changes no verdict."""
    taken = set()
    for record in records:
        if record["kind"] in HELPFUL_KINDS:
            continue  # scored, never labelled
        suite, item_id = record["suite"], str(record["id"])
        taken.add((suite, item_id) if (suite, item_id) in labels else (None, item_id))
    return [key for key in labels if key not in taken]
