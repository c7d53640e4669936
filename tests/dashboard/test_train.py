"""The Train page: start, watch, cancel, failures, and the run seen from another session."""

from apptest_helpers import open_page, texts
from streamlit.testing.v1 import AppTest

from dashboard import state


def _start(at: AppTest) -> str:
    [start] = [b for b in at.button if b.label == "Start fine-tuning"]
    start.click().run()
    assert not at.exception
    return at.session_state[state.CURRENT_RUN]


def test_start_then_cancel(app):
    open_page(app, "train")
    app.session_state["model.freeze_depth"] = 6
    app.session_state["train.max_steps"] = 1
    run_id = _start(app)
    assert run_id in state.manager().active() or state.manager().snapshot(run_id).finished
    assert f"Run {run_id}" in texts(app.subheader)
    app.button(key=f"cancel.{run_id}").click().run()
    assert not app.exception
    assert state.manager().wait(run_id, timeout=60).state == "cancelled"
    app.run()
    assert "cancelled" in texts(app.markdown)
    assert len(app.dataframe) == 1  # the runs table


def test_a_failed_run_shows_its_message(app):
    open_page(app, "train")
    app.session_state[state.BACKBONE] = "./no/such/backbone"
    run_id = _start(app)
    assert state.manager().wait(run_id, timeout=120).state == "failed"
    app.run()
    assert not app.exception
    assert "does not exist" in texts(app.error)


def test_another_session_sees_the_same_runs(trained_app):
    open_page(trained_app, "train")  # a fresh session: nothing of its own in session state
    assert not trained_app.exception
    run_id = state.manager().list_runs()[0].run_id
    assert f"Run {run_id}" in texts(trained_app.subheader)
    assert "succeeded" in texts(trained_app.markdown)
    assert trained_app.get("plotly_chart")  # loss and validation curves


def test_launch_on_several_gpus_runs_one_process_per_gpu(app, monkeypatch):
    """With more than one GPU the page offers Launch on N GPUs; here two gloo processes stand in for
    them."""
    from core.training import distributed

    open_page(app, "train")
    assert not [
        n for n in app.number_input if n.label == "Launch on N GPUs"
    ]  # no GPUs on this machine
    monkeypatch.setattr(distributed, "gpu_count", lambda: 2)
    app.session_state["model.freeze_depth"] = 6
    app.session_state["train.max_steps"] = 2
    app.run()
    [gpus] = [n for n in app.number_input if n.label == "Launch on N GPUs"]
    assert gpus.value == 2 and gpus.max == 2
    run_id = _start(app)
    snapshot = state.manager().wait(run_id, timeout=300)
    assert snapshot.state == "succeeded", snapshot.message
    assert (
        state.manager()
        .runs_dir.joinpath(run_id, "config.json")
        .read_text()
        .count('"num_processes": 2')
        == 1
    )
    app.run()
    assert not app.exception
    assert "On 2 processes" in texts(app.caption)


def test_sweep_freeze_depth_queues_every_setting_and_draws_the_curve(
    app, tiny_backbone, tiny_layers
):
    open_page(app, "train")
    app.session_state[state.BACKBONE] = tiny_backbone
    app.session_state["train.max_steps"] = 2
    app.session_state["train.epochs"] = 1
    app.run()
    [sweep] = [b for b in app.button if b.label == "Sweep freeze depth"]
    sweep.click().run()
    assert not app.exception
    manager = state.manager()
    run_ids = [s.run_id for s in manager.list_runs()]
    assert len(run_ids) == tiny_layers + 2  # every depth from all frozen to none, and LoRA
    for run_id in run_ids:
        assert manager.wait(run_id, timeout=180).state == "succeeded"
    app.run()
    assert not app.exception
    assert "Freeze-depth sweep" in texts(app.subheader)
    assert f"{tiny_layers + 2} of {tiny_layers + 2} runs finished" in texts(app.caption)
    assert app.get("plotly_chart")


def _estimate_line(app: AppTest, timeout: float = 120) -> str:
    """The estimate line above Start, once this machine's speed is measured."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = [m.value for m in app.markdown if "Estimated run time: about" in m.value]
        if shown:
            return shown[0]
        assert "measuring this machine's speed" in texts(app.caption)
        time.sleep(1)
        app.run()
        assert not app.exception
    raise AssertionError("no estimate shown")


def test_presets_set_the_model_settings_and_the_estimate_is_shown(app):
    open_page(app, "train")
    assert not app.exception
    line = _estimate_line(app)
    assert "on this CPU (measured: all-MiniLM-L6-v2" in line and "rows/s" in line
    assert "early stopping can end it sooner" in line
    preset = app.segmented_control(key="train.preset")
    assert preset.value == "Balanced"  # the credit sample's defaults take seconds
    preset.set_value("Quick demo").run()
    assert not app.exception
    assert app.session_state["train.epochs"] == 10 and app.session_state["train.patience"] == 3
    assert app.session_state["model.freeze_depth"] == "auto"
    assert "up to 10 epochs" in texts(app.markdown)
    assert "up to 10 epochs" in _estimate_line(app)
    # The Model page shows what the preset set; a manual change there makes it Custom.
    open_page(app, "model")
    assert app.select_slider(key="train.epochs").value == 10
    assert "Preset (Train page): Quick demo." in texts(app.caption)
    app.select_slider(key="train.epochs").set_value(12).run()
    assert "Preset (Train page): Custom." in texts(app.caption)
    open_page(app, "train")
    assert app.segmented_control(key="train.preset").value is None
    assert "Custom: settings changed on the Model page" in texts(app.caption)
    app.segmented_control(key="train.preset").set_value("Best quality").run()
    assert app.session_state["train.patience"] == 12
    assert "LightGBM" in texts(app.caption)
