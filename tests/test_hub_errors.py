"""The hub's errors, for a model snapshot and for a dataset file, as one line that says what to do."""

import httpx2
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import hf_raise_for_status

from derta_mlx.common.errors import UserError


def _http(kind, status):
    request = httpx2.Request("GET", "https://huggingface.co/api/x")
    return kind(f"{status} Client Error (Request ID: Root=1-abc)", response=httpx2.Response(status, request=request))


def _served(status):
    """The error huggingface_hub itself raises for the hub's answer: several lines, as it prints them."""
    request = httpx2.Request("GET", "https://huggingface.co/org/x/resolve/main/a.jsonl")
    response = httpx2.Response(status, request=request, headers={"X-Request-Id": "abc"},
                               json={"error": "Service temporarily unavailable"})
    try:
        hf_raise_for_status(response)
    except HfHubHTTPError as exc:
        assert "\n" in str(exc)  # what the one line is made from
        return exc
    raise AssertionError(f"{status} raised nothing")


RAISED = {
    "gated": lambda: _http(GatedRepoError, 401),
    "missing repo": lambda: _http(RepositoryNotFoundError, 404),
    "missing revision": lambda: _http(RevisionNotFoundError, 404),
    "no network": lambda: LocalEntryNotFoundError("connection refused"),
    # snapshot_download wraps what the hub answered (here: rate limited) in LocalEntryNotFoundError
    "rate limited": lambda: LocalEntryNotFoundError("Got: HfHubHTTPError: 429 Too Many Requests\nRequest ID: x"),
    "missing file": lambda: EntryNotFoundError("404"),
    "server error": lambda: _served(503),
}
MODEL_SAYS = {
    "gated": ["org/model is gated", "https://huggingface.co/org/model ", "hf auth login"],
    "missing repo": ["no model repo org/model on the hub", "private"],
    "missing revision": ["org/model at v2: the repo has no such revision"],
    "no network": ["cannot reach the hub for org/model at v2, and it is not cached (connection refused)",
                   "check the network"],
    "rate limited": ["cannot reach the hub for org/model at v2", "429 Too Many Requests"],
    "missing file": ["org/model at v2: no such file in the model repo"],
    "server error": ["download of org/model at v2 failed: ", "503"],
}
DATASET_SAYS = {
    "gated": ["org/data is gated", "https://huggingface.co/datasets/org/data ", "hf auth login"],
    "missing repo": ["no dataset repo org/data on the hub"],
    "missing revision": ["org/data/a.jsonl at v2: the repo has no such revision"],
    "no network": ["cannot reach the hub for org/data/a.jsonl at v2", "check the network"],
    "rate limited": ["cannot reach the hub for org/data/a.jsonl at v2", "429 Too Many Requests"],
    "missing file": ["org/data/a.jsonl at v2: no such file in the dataset repo", "--file names another"],
    "server error": ["download of org/data/a.jsonl at v2 failed: ", "503"],
}


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def raising(error):
    def fail(*args, **kwargs):
        raise error()

    return fail


@pytest.mark.parametrize("case", list(RAISED))
def test_a_model_download_says_what_to_do(case, online, monkeypatch):
    from derta_mlx.models import hub

    monkeypatch.setattr(hub, "snapshot_download", raising(RAISED[case]))
    with pytest.raises(UserError) as caught:
        hub.download("org/model", revision="v2")
    message = str(caught.value)
    assert "\n" not in message
    for words in MODEL_SAYS[case]:
        assert words in message, message


@pytest.mark.parametrize("case", list(RAISED))
def test_a_dataset_download_says_what_to_do(case, online, monkeypatch):
    from derta_mlx.data.fetch import download

    monkeypatch.setattr(download, "hf_hub_download", raising(RAISED[case]))
    with pytest.raises(UserError) as caught:
        download.dataset_file("org/data", "a.jsonl", revision="v2")
    message = str(caught.value)
    assert "\n" not in message
    for words in DATASET_SAYS[case]:
        assert words in message, message
