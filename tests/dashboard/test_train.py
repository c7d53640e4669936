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
