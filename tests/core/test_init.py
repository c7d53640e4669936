"""``import core`` is cheap and UI-free; its public names all resolve."""

from __future__ import annotations

import subprocess
import sys

import core


def test_import_core_leaves_streamlit_and_torch_out(project_root):
    code = (
        "import sys, core; core.DataError; core.RunConfig; print(sorted(m for m in ('streamlit', "
        "'torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=project_root, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_public_names_resolve():
    for name in core.__all__:
        assert getattr(core, name) is not None, name


def test_errors_are_typed():
    assert issubclass(core.DataError, core.FinTuneError) and issubclass(core.DataError, ValueError)
    assert issubclass(core.ConfigError, ValueError) and issubclass(
        core.BackboneError, core.FinTuneError
    )
    assert core.TrainingError("x", kind="out_of_memory").kind == "out_of_memory"
