"""Run a bench as on a CPU without AVX-512 and native bf16, on a machine that has them.

``--cpu-isa avx2`` caps each library's kernels at AVX2 through its own switch, as on the 2-core
AVX2-only machines the speed targets name: PyTorch's own kernels (``ATEN_CPU_CAPABILITY``), oneDNN's
(``ONEDNN_MAX_CPU_ISA``: no bf16 kernels, so ``core.training.devices.cpu_has_native_bf16`` says
no and "auto" precision is fp32) and MKL's (``MKL_ENABLE_INSTRUCTIONS``). The caps must be set
before torch is imported, so the bench starts itself again with them; its child processes inherit
them. Same cores, caches and clock as the machine it runs on: an emulation of the instruction set,
not of a slower chip.

The whole suite runs the same way: ``env $(python -m bench.cpu_isa avx2) .venv/bin/python -m
pytest``. torch.compile's kernel cache gets a folder of its own under the cap: kernels built for
the full instruction set, read back under the cap, hung a compiled test.
"""

from __future__ import annotations

import os
import sys
import tempfile

CAPS = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "TORCHINDUCTOR_CACHE_DIR": os.path.join(tempfile.gettempdir(), "torchinductor-avx2"),
    }
}
CHOICES = ("native", *CAPS)


def restrict(isa: str, module: str, argv: list[str] | None = None) -> None:
    """Start ``python -m module argv`` (default: this process's own arguments) again under the caps
    of ``isa`` unless they are in place (returns at once for "native", or when restarted)."""
    if isa == "native":
        return
    caps = CAPS[isa]
    if all(os.environ.get(k) == v for k, v in caps.items()):
        return
    if "torch" in sys.modules:
        raise RuntimeError("--cpu-isa must be applied before torch is imported")
    os.environ.update(caps)
    argv = sys.argv[1:] if argv is None else argv
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])


def describe(isa: str) -> str:
    """One line for the bench's header."""
    if isa == "native":
        return "CPU instruction set: native"
    caps = ", ".join(f"{k}={v}" for k, v in CAPS[isa].items() if not k.startswith("TORCHINDUCTOR"))
    return (
        f"CPU instruction set capped at {isa.upper()} ({caps}): emulates an {isa.upper()}-only CPU"
    )


if __name__ == "__main__":  # NAME=VALUE words, for `env $(python -m bench.cpu_isa avx2) COMMAND`
    caps = CAPS[sys.argv[1] if len(sys.argv) > 1 else "avx2"]
    print(" ".join(f"{k}={v}" for k, v in caps.items()))
