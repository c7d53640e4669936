"""The Model page: backbone facts, live trainable-parameter count, defaults, the model's input."""

import dataclasses

from apptest_helpers import open_page, texts

import core


def test_defaults_come_from_the_engine(app):
    open_page(app, "model")
    assert not app.exception
    defaults = core.default_config("credit_risk")
    for section in ("train", "model"):
        for field in dataclasses.fields(getattr(defaults, section)):
            key = f"{section}.{field.name}"
            if key in app.session_state:
                assert app.session_state[key] == getattr(getattr(defaults, section), field.name), (
                    key
                )
    assert app.selectbox(key="model.backbone").value == core.DEFAULT_BACKBONE
    epochs = app.select_slider(key="train.epochs")
    assert epochs.value == defaults.train.epochs == "auto"
    # German credit has no free text: auto freezes the backbone, and only the head trains.
    shown = "auto → 30 epochs at most, patience 6, head learning rate 0.0003: only the head trains"
    assert shown in texts(app.caption)
    assert app.number_input(key="model_page.head_lr").value is None  # empty box: auto
    app.select_slider(key="model.freeze_depth").set_value(0).run()
    assert "auto → 4 epochs at most, patience 2, head learning rate 0.001: backbone" in texts(
        app.caption
    )
    epochs.set_value(12).run()
    open_page(app, "train")
    assert "up to 12 epochs" in texts(app.markdown)


def test_freeze_depth_updates_the_trainable_count(app):
    open_page(app, "model")
    slider = app.select_slider(key="model.freeze_depth")
    assert slider.options == ["auto", *map(str, range(7))]  # MiniLM has six layers
    # auto on German credit (no free text): the whole backbone frozen, and the page says why.
    assert slider.value == "auto" and "auto → all 6 layers frozen" in texts(app.caption)
    assert app.metric[0].value.startswith("0 of")
    slider.set_value(0).run()
    assert not app.exception
    unfrozen = app.metric[0].value
    slider.set_value(6).run()
    assert not app.exception
    frozen = app.metric[0].value
    assert unfrozen != frozen
    assert frozen.startswith("0 of")  # everything in the backbone frozen


def test_device_and_model_input_are_shown(app):
    open_page(app, "model")
    assert "Training will run on" in texts(app.caption)
    assert "CPU" in texts(app.caption) or "GPU" in texts(app.caption)
    shown = texts(app.code)
    # German credit has no free text: no row text, and each cell is encoded once per value.
    assert "no free text" in shown and "[CLS]" not in shown
    assert "checking account status: " in texts(app.caption)
    assert len(app.get("arrow_data_frame")) + len(app.dataframe) >= 3  # numeric inputs per row


def test_bad_hyperparameters_stop_at_the_train_page_with_the_fix(app):
    open_page(app, "train")
    app.session_state["train.warmup_ratio"] = 1.5  # a value the engine's TrainConfig refuses
    app.run()
    assert not app.exception
    assert "warmup_ratio" in texts(app.error)


def test_lora_toggle_shows_adapter_count_and_reaches_the_run_config(app):
    from dashboard import state

    open_page(app, "model")
    app.toggle(key=state.LORA_ON).set_value(True).run()
    assert not app.exception
    shown = {m.label: m.value for m in app.metric}
    adapters = shown["Trainable backbone parameters (adapters)"]
    assert adapters.endswith("M") or adapters.endswith("k") or adapters[0].isdigit()
    app.number_input(key="model.lora_rank").set_value(4).run()
    app.text_input(key="model.lora_targets").set_value("query, value").run()
    assert not app.exception
    smaller = {m.label: m.value for m in app.metric}["Trainable backbone parameters (adapters)"]
    assert smaller != adapters
    app.switch_page("views/train.py").run()
    assert "LoRA r4 (alpha 16, query, value)" in texts(
        app.markdown
    )  # what the run will be configured with
    app.switch_page("views/model.py").run()
    app.text_input(key="model.lora_targets").set_value("no_such_layer").run()
    assert "match no linear layer" in texts(app.error)
    app.toggle(key=state.LORA_ON).set_value(False).run()
    app.switch_page("views/train.py").run()
    assert "LoRA" not in texts(app.markdown)
