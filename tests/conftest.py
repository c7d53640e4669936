"""Shared fixtures: tiny tables built in code, runs folders, tiny random backbones.

Tiny backbones (hidden 32, 3 layers, 2 heads) keep unit tests at seconds on a 2-core CPU; the
integration tests use the real bundled MiniLM.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# Set before anything imports torch or huggingface_hub, which read these once at import time;
# worker and CLI subprocesses inherit them. No test may reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models are all thread overhead: one intra-op thread runs them ~10x faster on 2 cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY_LAYOUTS = ("bert", "roberta", "distilbert", "deberta-v2", "electra")
TINY_LAYERS = 3

_PURPOSES = ["new car", "used car", "furniture", "education", "business", "repairs"]
_WORDS = [
    "quarterly",
    "revenue",
    "guidance",
    "margin",
    "loan",
    "card",
    "merchant",
    "refund",
    "branch",
    "savings",
    "overdraft",
    "mortgage",
    "payroll",
    "invoice",
    "dividend",
]


def credit_table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A credit-like binary table: id, numeric (with gaps), categorical, free text, date,
    constant."""
    rng = np.random.default_rng(seed)
    housing = rng.choice(["own", "rent", "free"], size=n, p=[0.5, 0.35, 0.15])
    income = rng.normal(3000, 800, size=n).round(2)
    income[rng.choice(n, size=n // 20, replace=False)] = np.nan
    risk = (housing == "rent").astype(float) + rng.normal(0, 0.4, size=n)
    notes = [
        f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} request number {i} for {rng.choice(_WORDS)}"
        for i in range(n)
    ]
    return pd.DataFrame(
        {
            "applicant_id": np.arange(1000, 1000 + n),
            "age_years": rng.integers(19, 75, size=n),
            "monthly_income": income,
            "purpose": rng.choice(_PURPOSES, size=n),
            "housing": housing,
            "notes": notes,
            "application_date": pd.date_range("2023-01-01", periods=n, freq="D").strftime(
                "%Y-%m-%d"
            ),
            "branch_country": "DE",
            "credit_risk": np.where(risk > 0.5, "bad", "good"),
        }
    )


def sentiment_table(n: int = 150, seed: int = 1) -> pd.DataFrame:
    """A multiclass text table whose label is carried by one word of the headline."""
    rng = np.random.default_rng(seed)
    cue = {"bearish": "plunges", "neutral": "holds", "bullish": "soars"}
    labels = rng.choice(list(cue), size=n)
    texts = [
        f"{rng.choice(_WORDS)} {cue[label]} as {rng.choice(_WORDS)} {rng.choice(_WORDS)} item {i}"
        for i, label in enumerate(labels)
    ]
    return pd.DataFrame({"headline": texts, "label": labels})


def regression_table(n: int = 160, seed: int = 2) -> pd.DataFrame:
    """A regression table: two numbers, a category and a continuous target."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.uniform(0, 10, size=n)
    sector = rng.choice(["banks", "energy", "retail"], size=n)
    y = 3.0 * x1 + 0.2 * x2 + np.where(sector == "energy", 1.5, 0.0) + rng.normal(0, 0.1, size=n)
    return pd.DataFrame(
        {"momentum": x1, "leverage": x2, "sector": sector, "spread_bps": y.round(4)}
    )


def easy_table(n: int = 240, seed: int = 3) -> pd.DataFrame:
    """A binary table whose label is one categorical word: any working model learns it."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["alpha", "beta", "gamma", "delta"], size=n)
    return pd.DataFrame(
        {
            "segment": segment,
            "noise_value": rng.normal(size=n).round(3),
            "outcome": np.where(np.isin(segment, ["alpha", "beta"]), "yes", "no"),
        }
    )


@pytest.fixture
def credit_df() -> pd.DataFrame:
    return credit_table()


@pytest.fixture
def sentiment_df() -> pd.DataFrame:
    return sentiment_table()


@pytest.fixture
def regression_df() -> pd.DataFrame:
    return regression_table()


@pytest.fixture
def easy_df() -> pd.DataFrame:
    return easy_table()


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    path.mkdir()
    return path


def _tiny_config(layout: str):
    from transformers import (
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        RobertaConfig,
    )

    # vocab_size matches the MiniLM tokenizer reused below, so every token id has an embedding.
    common = dict(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    if layout == "bert":
        return BertConfig(**common)
    if layout == "roberta":
        return RobertaConfig(**common, pad_token_id=0)
    if layout == "distilbert":
        return DistilBertConfig(
            vocab_size=30522,
            dim=32,
            n_layers=TINY_LAYERS,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
        )
    if layout == "deberta-v2":
        return DebertaV2Config(
            **common,
            relative_attention=True,
            position_buckets=16,
            pos_att_type=["p2c", "c2p"],
            norm_rel_ebd="layer_norm",
        )
    if layout == "electra":
        return ElectraConfig(**common, embedding_size=16)
    raise ValueError(layout)


@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> dict[str, Path]:
    """Local Hugging Face folders (config, model.safetensors, tokenizer) of tiny random encoders."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from core.model.backbones import bundled_minilm_path

    root = tmp_path_factory.mktemp("backbones")
    tokenizer = AutoTokenizer.from_pretrained(bundled_minilm_path())
    folders = {}
    for layout in TINY_LAYOUTS:
        torch.manual_seed(0)
        folder = root / layout
        AutoModel.from_config(_tiny_config(layout)).save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        folders[layout] = folder
    return folders


@pytest.fixture(scope="session")
def tiny_backbone(tiny_backbones) -> str:
    """The tiny BERT folder, as a string ready for ``ModelConfig.backbone``."""
    return str(tiny_backbones["bert"])


@pytest.fixture
def tiny_config(tiny_backbone):
    """A fast RunConfig factory on the tiny BERT: ``tiny_config("credit_risk", epochs=2)``."""
    from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    def make(target: str, *, data: dict | None = None, model: dict | None = None, **train):
        train = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "head_lr": 1e-2, "seed": 0, **train}
        return RunConfig(
            data=DataConfig(target=target, **(data or {})),
            model=ModelConfig(
                **{"backbone": tiny_backbone, "d_hidden": 32, "d_numeric": 16, **(model or {})}
            ),
            train=TrainConfig(**train),
        )

    return make


def pytest_generate_tests(metafunc):
    """A test that takes ``layout`` runs once per tiny backbone layout."""
    explicit = any(
        "layout" in str(m.args[0]).split(",")
        for m in metafunc.definition.iter_markers("parametrize")
    )
    if "layout" in metafunc.fixturenames and not explicit:
        metafunc.parametrize("layout", TINY_LAYOUTS)


@pytest.fixture(scope="session")
def tiny_layers() -> int:
    return TINY_LAYERS


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def make_table():
    """Fresh tiny tables for wider-scoped fixtures: ``make_table("credit")``."""
    builders = {
        "credit": credit_table,
        "sentiment": sentiment_table,
        "regression": regression_table,
        "easy": easy_table,
    }
    return lambda name: builders[name]()


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM a server started by a test, then SIGKILL if it has not exited within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_fintune(*args) -> subprocess.CompletedProcess:
    """``fintune ARGS`` in a fresh interpreter, from the project root."""
    return subprocess.run(
        [sys.executable, "-m", "core.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=240,
    )


@pytest.fixture(scope="session")
def fintune():
    """Run the CLI in a subprocess: ``fintune("train", path, "--target", "y")``."""
    return run_fintune
