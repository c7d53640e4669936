"""The table path end to end: cells read once per distinct value, and the trees in the blend."""

from __future__ import annotations

import numpy as np
import torch

from core.training.estimator import FineTuner


def test_cells_are_encoded_once_per_distinct_value_when_frozen(credit_df, tiny_config):
    tuner = FineTuner(tiny_config("credit_risk", max_steps=2, model={"freeze_depth": 2})).fit(
        credit_df
    )
    model = tuner.model_
    assert not model.reads_row_text or tuner.spec_.columns("text")
    assert model.n_cell_columns == len(tuner.preprocessor_.cell_columns) > 0
    calls = []
    model._cell_table = None  # fitting scored the validation rows: count from a fresh table
    hook = model.backbone.register_forward_hook(lambda m, args, out: calls.append(1))
    try:
        model.eval()
        rows = tuner.encode(credit_df.head(50), with_targets=False)
        cells = torch.from_numpy(rows.cells)
        with torch.no_grad():
            first = model.cell_vectors(cells)
            again = model.cell_vectors(cells)
    finally:
        hook.remove()
    # One pass over the vocabulary (chunks of 256) for both lookups, none per row.
    assert len(calls) == -(-len(tuner.preprocessor_.cell_vocabulary) // 256)
    assert torch.equal(first, again)


def test_the_backbone_learns_through_the_cells(credit_df, tiny_config):
    tuner = FineTuner(
        tiny_config(
            "credit_risk",
            max_steps=3,
            data={"roles": {"notes": "ignore"}},
            model={"freeze_depth": 0},  # "auto" would freeze the whole backbone on a table
        )
    )

    def snapshot(model):
        return model.backbone.encoder.layer[-1].output.dense.weight.detach().clone()

    tuner.fit(credit_df.head(200), on_progress=None)
    after = snapshot(tuner.model_)
    assert not tuner.model_.reads_row_text  # no free text: the backbone reads only the cells
    fresh = FineTuner(tuner.config)
    fresh.spec_ = tuner.spec_
    fresh.preprocessor_ = tuner.preprocessor_
    from core.model.backbones import load_backbone

    torch.manual_seed(tuner.config.train.seed)
    fresh._build_model(load_backbone(tuner.config.model.backbone))
    before = snapshot(fresh.model_)
    assert not torch.equal(before, after)  # gradients reached the backbone through the cells


def test_the_blend_ships_end_to_end(credit_df, tiny_config, tmp_path):
    tuner = FineTuner(tiny_config("credit_risk", max_steps=2)).fit(credit_df)
    test = credit_df.iloc[tuner.splits_["test"]]
    # A tiny random backbone trained two steps is weak: the trees must carry weight.
    assert tuner.trees_ is not None and 0.0 <= tuner.blend_["weight"] < 1.0
    parts = tuner.evaluate_parts(test)
    assert set(parts) == {"network", "trees"}
    blended = tuner.raw_outputs(test)
    assert not np.allclose(blended, tuner.network_outputs(test))
    tuner.save(tmp_path / "model")
    assert (tmp_path / "model" / "trees.txt").is_file()
    again = FineTuner.load(tmp_path / "model")
    np.testing.assert_allclose(again.raw_outputs(test), blended, atol=1e-4)

    off = FineTuner(tiny_config("credit_risk", max_steps=2, model={"trees": "off"})).fit(credit_df)
    assert off.trees_ is None and off.evaluate_parts(test) == {}
    np.testing.assert_allclose(off.raw_outputs(test), off.network_outputs(test))


def test_auto_freezes_the_whole_backbone_on_a_table_and_none_on_text(
    credit_df, sentiment_df, tiny_config
):
    from core.model.backbones import n_layers

    table = FineTuner(tiny_config("credit_risk", max_steps=1)).fit(credit_df)
    layers = n_layers(table.model_.backbone)
    assert table.config.model.freeze_depth == layers  # the saved config holds the resolved depth
    assert not any(p.requires_grad for p in table.model_.backbone.parameters())
    text = FineTuner(tiny_config("label", max_steps=1)).fit(sentiment_df)
    assert text.config.model.freeze_depth == 0
    assert any(p.requires_grad for p in text.model_.backbone.encoder.parameters())


def test_auto_keeps_the_backbone_training_for_row_text_and_lora(credit_df, tiny_config):
    from core.data.schema import describe_table
    from core.model.backbones import resolve_freeze_depth

    spec = describe_table(credit_df, tiny_config("credit_risk").data)
    for model, expected in (
        ({}, 4),
        ({"table_encoding": "row_text"}, 0),
        ({"lora_rank": 4}, 0),
        ({"freeze_depth": 2}, 2),
    ):
        config = tiny_config("credit_risk", model=model)
        assert resolve_freeze_depth(config.model, spec, 4) == expected, model


def test_a_run_folder_records_the_depth_auto_became(runs_dir, credit_df, tiny_config):
    from core.runs import folder as runs
    from core.runs.worker import execute

    run_dir = runs.create_run(runs_dir, tiny_config("credit_risk", max_steps=1), credit_df)
    assert runs.load_config(run_dir).model.freeze_depth == "auto"
    assert execute(run_dir) == "succeeded", runs.read_status(run_dir)
    config = runs.load_config(run_dir)
    assert isinstance(config.model.freeze_depth, int) and config.model.freeze_depth > 0
    assert runs.list_runs(runs_dir)[0].tuning == f"freeze {config.model.freeze_depth}"
    # The notes column is free text, read by the backbone every epoch: auto patience is 2.
    assert (config.train.epochs, config.train.patience) == (1, 2)


def test_auto_epochs_follow_what_trains(credit_df, sentiment_df, tiny_config):
    from core.config import AUTO_SCHEDULE, ConfigError, TrainConfig
    from core.data.schema import describe_table
    from core.model.backbones import trains_head_only

    no_text = tiny_config("credit_risk", data={"roles": {"notes": "ignore"}}).data
    credit = describe_table(credit_df, no_text)
    numbers = credit_df[["age_years", "monthly_income", "credit_risk"]]
    text = describe_table(sentiment_df, tiny_config("label").data)
    for spec, model, expected in (
        (credit, {}, True),  # auto freezes the whole backbone: only the head trains
        (credit, {"freeze_depth": 2}, False),  # the top layers learn through the cells
        (credit, {"table_encoding": "row_text"}, False),
        (credit, {"lora_rank": 4}, False),
        (describe_table(credit_df, tiny_config("credit_risk").data), {}, False),  # free text
        (describe_table(numbers, tiny_config("credit_risk").data), {"freeze_depth": 0}, True),
        (text, {}, False),
    ):
        config = tiny_config(spec.target, model=model)
        assert trains_head_only(config.model, spec, 4) is expected, (spec.target, model)
    assert TrainConfig().resolved(head_only=True).epochs == AUTO_SCHEDULE[True]["epochs"] > 4
    assert TrainConfig().resolved(head_only=False).patience == AUTO_SCHEDULE[False]["patience"]
    assert TrainConfig().resolved(head_only=True).head_lr == AUTO_SCHEDULE[True]["head_lr"]
    chosen = TrainConfig(epochs="3", patience=1).resolved(head_only=True)
    assert (chosen.epochs, chosen.patience) == (3, 1)  # a number is kept, text digits read
    for bad in (0, "soon", True, 2.5):
        try:
            TrainConfig(epochs=bad)
        except ConfigError as exc:
            assert "epochs" in str(exc) and "auto" in str(exc)
        else:
            raise AssertionError(f"epochs={bad!r} was accepted")


def test_a_head_only_run_trains_the_auto_epochs(credit_df, tiny_config):
    from core.config import AUTO_SCHEDULE

    config = tiny_config(
        "credit_risk", data={"roles": {"notes": "ignore"}}, epochs="auto", patience=50
    )
    tuner = FineTuner(config).fit(credit_df.head(120))
    assert tuner.config.train.epochs == AUTO_SCHEDULE[True]["epochs"]  # saved resolved
    assert len(tuner.history_) == AUTO_SCHEDULE[True]["epochs"]  # patience 50: every epoch ran


def test_a_learning_backbone_encodes_its_cells_once_per_weights_for_inference(
    credit_df, tiny_config
):
    """Every weight of a loaded model requires grad; eval() must not throw its cell vectors away
    (each predict would re-encode the vocabulary), but new weights must."""
    tuner = FineTuner(
        tiny_config(
            "credit_risk",
            max_steps=2,
            data={"roles": {"notes": "ignore"}},  # no text read per row: only the cells
            model={"freeze_depth": 0, "trees": "off"},  # the network alone answers
            precision="fp32",
        )
    ).fit(credit_df)
    model = tuner.model_
    assert model.backbone_trains and not model.training  # fitted: in eval mode
    model._cell_table = None  # fitting scored the validation rows: count from a fresh table
    calls = []
    hook = model.backbone.register_forward_hook(lambda m, args, out: calls.append(1))
    try:
        first = tuner.predict_proba(credit_df.head(20))
        passes = len(calls)
        again = tuner.predict_proba(credit_df.head(20))  # eval() again: the same vectors
        assert len(calls) == passes > 0
        np.testing.assert_allclose(first, again)
        table = model._cell_table.clone()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for name, weight in state.items():
            if name.endswith("encoder.layer.0.output.dense.weight"):
                weight.add_(torch.randn_like(weight))  # a constant would be normed away
        model.load_state_dict(state)
        tuner.predict_proba(credit_df.head(20))
        assert len(calls) == 2 * passes  # new weights: the vocabulary was encoded again
        assert not torch.allclose(model._cell_table, table)  # ... into new vectors
        model.train()
        model.eval()
        tuner.predict_proba(credit_df.head(20))
        assert len(calls) == 3 * passes  # through training mode: encoded again
    finally:
        hook.remove()
