"""What models and datasets share about the Hugging Face hub cache: offline mode and its message."""

from huggingface_hub import constants


def offline() -> bool:
    return bool(constants.HF_HUB_OFFLINE)


def not_cached_offline(what: str) -> str:
    """The error for something missing from the cache while HF_HUB_OFFLINE is set."""
    return (f"{what} is not in the hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set; "
            "unset HF_HUB_OFFLINE to download it, or point HF_HOME at a cache that has it.")
