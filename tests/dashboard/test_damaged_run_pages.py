"""The pages beside damaged run folders, and a max length the backbone cannot take."""

import json

import pytest
from apptest_helpers import open_page, texts

from core.runs import folder as runs
from dashboard import state
from tests.core.test_damaged_runs import CASES, OLDER, _every_damage, _succeeded_run

NEWEST = "20250101-000000-eeeeee"  # the run the Train page follows when the session started none


@pytest.fixture
def damaged_runs(runs_dir, credit_df) -> dict[str, str]:
    """Every kind of damaged folder, a healthy succeeded run, the newest run damaged, and a sweep
    whose points include a damaged run; returns {damaged run id: reason}."""
    runs_dir.mkdir()
    expected = _every_damage(runs_dir, credit_df)
    damage, reason = CASES["pid text"]
    damage(_succeeded_run(runs_dir, credit_df, NEWEST, roc_auc=0.5))
    expected[NEWEST] = reason
    (runs_dir / "sweeps").mkdir()
    points = [
        {"label": "freeze 1", "freeze_depth": 1, "lora_rank": 0, "run_id": OLDER},
        {"label": "freeze 0", "freeze_depth": 0, "lora_rank": 0, "run_id": NEWEST},
    ]
    (runs_dir / "sweeps" / "20250101-000000-ab12.json").write_text(
        json.dumps(
            {
                "sweep_id": "20250101-000000-ab12",
                "created": "",
                "source": "credit.csv",
                "points": points,
            }
        )
    )
    return expected


def test_the_train_page_lists_damaged_runs_and_shows_why(app, damaged_runs):
    open_page(app, "train")
    assert not app.exception
    assert f"Run {NEWEST}" in texts(app.subheader)  # the live view of a damaged run
    assert "damaged" in texts(app.markdown)
    assert "status.json: pid 'abc' is not a process id" in texts(app.warning)
    assert "Freeze-depth sweep" in texts(app.subheader)
    [table] = [frame.value for frame in app.dataframe if "message" in frame.value.columns]
    rows = table.set_index("run")
    assert rows.loc[OLDER, "state"] == "succeeded"
    for run_id, reason in damaged_runs.items():
        assert rows.loc[run_id, "state"] == "damaged" and reason in rows.loc[run_id, "message"]


@pytest.mark.parametrize("page", ["results", "compare", "predict"])
def test_pages_that_pick_a_finished_run_skip_damaged_ones(app, damaged_runs, page):
    open_page(app, page)
    assert not app.exception
    if page == "compare":  # one healthy finished run: the damaged ones do not count
        assert "Comparing needs two finished runs" in texts(app.info)
        return
    pickers = [w for w in app.selectbox if w.label == "Run"]
    assert pickers
    for picker in pickers:  # only the healthy succeeded run is offered
        assert len(picker.options) == 1 and picker.options[0].endswith(OLDER)  # label, then id


def _no_run_folders() -> bool:
    folder = state.runs_dir()
    return not folder.exists() or not [p for p in folder.iterdir() if runs._RUN_ID.match(p.name)]


@pytest.mark.parametrize("button", ["Start fine-tuning", "Sweep freeze depth"])
def test_train_refuses_a_max_length_beyond_the_backbone_with_a_message(app, tiny_backbone, button):
    open_page(app, "train")
    app.session_state[state.BACKBONE] = tiny_backbone
    app.session_state["model.max_length"] = 1024
    app.run()
    [start] = [b for b in app.button if b.label == button]
    start.click().run()
    assert not app.exception
    assert "max length 1024 is longer than the backbone's 128 positions" in texts(app.error)
    assert "use 128 or less" in texts(app.error)
    assert state.CURRENT_RUN not in app.session_state
    assert _no_run_folders()


def test_the_model_page_says_when_max_length_exceeds_the_backbone(app):
    open_page(app, "model")
    app.number_input(key="model.max_length").set_value(1024).run()
    assert not app.exception
    assert "max length 1024 is longer than the backbone's 512 positions" in texts(app.error)
    app.number_input(key="model.max_length").set_value(512).run()
    assert "longer than the backbone" not in texts(app.error)
