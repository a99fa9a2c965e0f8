"""What models and datasets share about the Hugging Face hub: offline mode, and its errors in one line.

huggingface_hub's own messages carry a request id and an HTTP status; `hub_errors` turns each
into what the user should do next, in the same words for a model snapshot and a dataset file.
"""

from contextlib import contextmanager
from typing import Optional

from huggingface_hub import constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from derta_mlx.common.errors import UserError


def offline() -> bool:
    return bool(constants.HF_HUB_OFFLINE)


def not_cached_offline(what: str) -> str:
    """The error for something missing from the cache while HF_HUB_OFFLINE is set."""
    return (f"{what} is not in the hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set; "
            "unset HF_HUB_OFFLINE to download it, or point HF_HOME at a cache that has it.")


@contextmanager
def hub_errors(repo: str, revision: Optional[str] = None, filename: Optional[str] = None,
               repo_type: str = "model", missing_file_hint: str = ""):
    """Raise UserError, one line saying what to do, for any huggingface_hub error inside the block."""
    where = repo + (f"/{filename}" if filename else "") + (f" at {revision}" if revision else "")
    page = f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo}"
    try:
        yield
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: first
        raise UserError(f"{repo} is gated: accept its terms on {page} and log in (`hf auth login`), "
                        "then try again") from None
    except RepositoryNotFoundError:
        raise UserError(f"no {repo_type} repo {repo} on the hub (or it is private: log in with "
                        "`hf auth login`)") from None
    except RevisionNotFoundError:
        raise UserError(f"{where}: the repo has no such revision (a branch, tag or commit)") from None
    except LocalEntryNotFoundError as exc:  # a subclass of EntryNotFoundError: first
        if offline():
            raise UserError(not_cached_offline(where)) from None
        # snapshot_download wraps the hub's answer (a 429, a 503) in this error: keep its first line
        raise UserError(f"cannot reach the hub for {where}, and it is not cached ({_first_line(exc)}); "
                        "check the network") from None
    except EntryNotFoundError:
        raise UserError(f"{where}: no such file in the {repo_type} repo{missing_file_hint}") from None
    except HFValidationError as exc:
        raise UserError(f"{repo!r} is not a hub repo id: {_first_line(exc)}") from None
    except HfHubHTTPError as exc:
        raise UserError(f"download of {where} failed: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    """The hub's messages go on with the URL, a request id and a help link, each on a line."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__
