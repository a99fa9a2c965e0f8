"""Dataset files from the Hugging Face hub, through huggingface_hub's shared cache.

huggingface_hub honours HF_HOME / HF_HUB_CACHE / HF_HUB_OFFLINE, resumes a partial download and
draws its progress bar; this module only names the dataset repo and turns the hub's errors into
one line that says what to do.
"""

from pathlib import Path
from typing import Optional

from huggingface_hub import hf_hub_download
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
from derta_mlx.common.hub_cache import not_cached_offline, offline


def dataset_file(repo: str, filename: str, revision: Optional[str] = None) -> Path:
    """The local path of one file of a dataset repo: from the cache, else downloaded into it."""
    where = f"{repo}/{filename}" + (f" at {revision}" if revision else "")
    try:
        return Path(hf_hub_download(repo, filename, repo_type="dataset", revision=revision,
                                    local_files_only=offline()))
    except GatedRepoError:
        raise UserError(f"{repo} is gated: accept its terms on https://huggingface.co/datasets/{repo} "
                        "and log in (`hf auth login`), then fetch again") from None
    except RepositoryNotFoundError:
        raise UserError(f"no dataset repo {repo} on the hub (or it is private: log in with `hf auth login`)") from None
    except RevisionNotFoundError:
        raise UserError(f"{repo} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:  # a subclass of EntryNotFoundError: first
        if offline():
            raise UserError(not_cached_offline(where)) from None
        raise UserError(f"cannot reach the hub for {where}, and it is not cached; check the network") from None
    except EntryNotFoundError:
        raise UserError(f"{where}: no such file in the dataset repo (see its Files tab; --file names "
                        "another)") from None
    except HFValidationError as exc:
        raise UserError(f"{repo!r} is not a hub repo id: {exc}") from None
    except HfHubHTTPError as exc:
        raise UserError(f"download of {where} failed: {exc}") from None
