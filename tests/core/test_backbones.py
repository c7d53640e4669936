"""Backbone registry, loading through one door, and freeze depth on every supported layout."""

from __future__ import annotations

import json

import pytest

from core.config import DEFAULT_BACKBONE
from core.errors import BackboneError, ConfigError
from core.model.backbones import (
    CURATED,
    bundled_minilm_path,
    count_parameters,
    describe_backbone,
    find_layers,
    freeze,
    list_backbones,
    load_backbone,
    n_layers,
)


@pytest.fixture(scope="module")
def loaded(tiny_backbones):
    """Each tiny layout loaded once: {layout: (model, tokenizer)}."""
    return {layout: load_backbone(str(path)) for layout, path in tiny_backbones.items()}


def _embedding_parameters(model) -> list[str]:
    names = [
        n
        for n, _ in model.named_parameters()
        if "embed" in n.split(".")[0] or "rel_embeddings" in n
    ]
    encoder_norm = [n for n, _ in model.named_parameters() if n.startswith("encoder.LayerNorm")]
    return names + encoder_norm


def _layer_index(model) -> dict[str, int | None]:
    """For each parameter name, the encoder layer it belongs to (None outside the layers)."""
    owner = {}
    for index, layer in enumerate(find_layers(model)):
        for parameter in layer.parameters():
            owner[id(parameter)] = index
    return {name: owner.get(id(p)) for name, p in model.named_parameters()}


def test_tiny_layouts_load_with_their_layers(loaded, layout, tiny_layers):
    model, tokenizer = loaded[layout]
    assert n_layers(model) == tiny_layers
    batch = tokenizer(["purpose: new car | housing: own"], return_tensors="pt")
    hidden = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    assert hidden.shape[-1] == 32


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_freeze_depth(loaded, layout, depth, tiny_layers):
    assert depth <= tiny_layers
    model, _ = loaded[layout]
    freeze(model, depth)
    layer_of = _layer_index(model)
    embeddings = set(_embedding_parameters(model))
    assert embeddings, "every layout has embeddings"
    for name, parameter in model.named_parameters():
        layer = layer_of[name]
        if name.startswith("pooler."):
            expected = False  # mean pooling is used; the pooler never gets a gradient
        elif name in embeddings:
            expected = depth == 0
        elif layer is not None:
            expected = layer >= depth
        else:
            expected = True
        assert parameter.requires_grad is expected, (layout, depth, name)

    trainable, total = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    if depth == tiny_layers:
        assert not any(p.requires_grad for layer in find_layers(model) for p in layer.parameters())


def test_trainable_count_falls_with_depth(loaded, layout, tiny_layers):
    model, _ = loaded[layout]
    counts = []
    for depth in range(tiny_layers + 1):
        freeze(model, depth)
        counts.append(count_parameters(model)[0])
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)
    freeze(model, 0)
    pooler = sum(p.numel() for n, p in model.named_parameters() if n.startswith("pooler."))
    assert count_parameters(model)[0] == count_parameters(model)[1] - pooler


def test_out_of_range_depth(loaded, tiny_layers):
    model, _ = loaded["bert"]
    for depth in (-1, tiny_layers + 1):
        with pytest.raises(
            ConfigError,
            match=rf"Freeze depth {depth} is out of range: this backbone has {tiny_layers} layers",
        ):
            freeze(model, depth)


def test_list_backbones_has_the_curated_entries():
    infos = {info.name: info for info in list_backbones()}
    assert set(infos) == set(CURATED)
    for name in (
        "ProsusAI/finbert",
        "yiyanghkust/finbert-tone",
        "distilroberta-base",
        "bert-base-uncased",
        "microsoft/deberta-v3-small",
        DEFAULT_BACKBONE,
    ):
        assert name in infos
        assert infos[name].n_layers > 0 and infos[name].n_parameters > 1e6
        assert infos[name].size_label.endswith("M parameters")
    bundled = infos[DEFAULT_BACKBONE]
    assert bundled.available and bundled.source == "bundled"
    assert bundled_minilm_path() is not None


def test_bundled_backbone_loads_offline():
    model, tokenizer = load_backbone(DEFAULT_BACKBONE)
    assert n_layers(model) == 6
    assert model.config.hidden_size == 384
    assert tokenizer("hello")["input_ids"][0] == tokenizer.cls_token_id


def test_describe_a_local_folder(tiny_backbones, tiny_layers):
    info = describe_backbone(str(tiny_backbones["distilbert"]))
    assert info.available and info.source == "local folder"
    assert info.n_layers == tiny_layers and info.description == "distilbert"


def test_missing_folder(tmp_path):
    with pytest.raises(BackboneError, match=r"does not exist: check the path"):
        load_backbone(str(tmp_path / "no-such-model"))


def test_folder_without_config(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(BackboneError, match=r"has no config\.json"):
        load_backbone(str(tmp_path / "weights"))


@pytest.mark.timeout(60)
def test_unknown_hub_id_offline(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once at import; patch the constant so this cannot hang on
    # retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneError) as caught:
        load_backbone("no-such-org/no-such-model")
    message = str(caught.value)
    assert "'no-such-org/no-such-model'" in message
    assert "offline" in message.lower()
    assert "local model folder" in message and DEFAULT_BACKBONE in message  # the ways out


def _with_remote_code(folder, tmp_path, model_type: str):
    """A copy of ``folder`` whose config asks for custom code that would leave a marker if run."""
    import shutil

    marker = tmp_path / "code-was-run"
    target = tmp_path / f"remote-{model_type}"
    shutil.copytree(folder, target)
    config = json.loads((target / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "custom.CustomConfig", "AutoModel": "custom.CustomModel"}
    (target / "config.json").write_text(json.dumps(config))
    (target / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertConfig, BertModel\n"
        f"class CustomConfig(BertConfig):\n    model_type = {model_type!r}\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n"
    )
    return target, marker


def test_remote_code_is_never_run_for_a_known_type(tiny_backbones, tmp_path):
    # A known model_type with an auto_map: transformers 5 loads its own class and ignores the code.
    folder, marker = _with_remote_code(tiny_backbones["bert"], tmp_path, "bert")
    model, _ = load_backbone(str(folder))
    assert type(model).__name__ == "BertModel"
    assert not marker.exists()


def test_remote_code_only_model_is_refused(tiny_backbones, tmp_path):
    folder, marker = _with_remote_code(tiny_backbones["bert"], tmp_path, "custombert")
    with pytest.raises(BackboneError, match="custom code"):
        load_backbone(str(folder))
    assert not marker.exists()
