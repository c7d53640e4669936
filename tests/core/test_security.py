"""Hostile files and names: pickled weights never run, ids stay ours, exports neutralise
formulas."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from core.errors import BackboneError, RunError
from core.model.backbones import load_backbone
from core.runs import folder as runs
from core.runs.files import read_json
from core.serving.safe_csv import escape_formulas, to_safe_csv


class _Payload:
    """Pickled, this would write a marker file when unpickled by a full (unsafe) torch.load."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (shutil.copyfile, (__file__, self.marker))


def test_pickled_weights_with_code_are_refused_and_never_run(tiny_backbones, tmp_path):
    folder = tmp_path / "hostile"
    shutil.copytree(tiny_backbones["bert"], folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code-was-run"
    state = {
        "embeddings.word_embeddings.weight": torch.zeros(2, 2),
        "payload": _Payload(str(marker)),
    }
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(BackboneError) as caught:
        load_backbone(str(folder))
    assert not marker.exists()
    assert "'" + str(folder) + "'" in str(caught.value) or str(folder) in str(caught.value)


@pytest.mark.parametrize(
    "bad",
    [
        "../outside",
        "/etc/passwd",
        "..",
        "20260101-000000-abcdef/../../x",
        "run id",
        "",
        "20260101-000000-ABCDEF",
    ],
)
def test_foreign_run_ids_never_become_paths(tmp_path, bad):
    with pytest.raises(RunError):
        runs.run_path(tmp_path, bad)


def test_created_runs_live_inside_the_runs_folder(tmp_path, credit_df, tiny_config):
    run_dir = runs.create_run(
        tmp_path / "runs", tiny_config("credit_risk"), credit_df, source="../../etc/passwd"
    )
    assert run_dir.parent == tmp_path / "runs"
    assert read_json(run_dir / "config.json")["source"] == "passwd"  # a name, never a path


def test_exports_neutralise_formulas_in_cells_and_headers():
    frame = pd.DataFrame(
        {
            "note": ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "plain", None],
            '=HYPERLINK("x")': [1, 2, 3, 4, 5, 6, 7],
            "amount": [-1.5, 2, 3, 4, 5, 6, 7],
        }
    )
    safe = escape_formulas(frame)
    assert list(safe["note"][:5]) == ["'=cmd|' /C calc'!A0", "'+1+1", "'-2+3", "'@SUM(A1)", "'\tx"]
    assert safe["note"][5] == "plain" and pd.isna(safe["note"][6])
    assert list(safe["amount"]) == list(frame["amount"])  # numbers stay numbers
    assert safe.columns[1].startswith("'=")
    text = to_safe_csv(frame).decode()
    assert "\n=cmd" not in text and ",=" not in text
