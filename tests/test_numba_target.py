"""Every numba kernel is compiled for one reference CPU target where the host runs it (drivers.numba_target)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drivers import numba_target

ROOT = Path(__file__).resolve().parents[1]
V3 = numba_target.X86_64_V3_FLAGS | {"sse4_2", "popcnt"}
V4 = V3 | numba_target.X86_64_V4_FLAGS
REFERENCE = numba_target.reference_target()


def test_the_best_reference_target_the_host_runs_is_chosen():
    assert numba_target.reference_target("x86_64", V4) == "skylake-avx512"
    assert numba_target.reference_target("AMD64", V3) == "haswell"
    assert numba_target.reference_target("x86_64", V4 - {"avx512vl"}) == "haswell"
    assert numba_target.reference_target("x86_64", V3 - {"fma"}) is None
    assert numba_target.reference_target("x86_64", V3 - {"abm"}) is None  # no LZCNT
    assert numba_target.reference_target("aarch64", V4) is None
    assert numba_target.reference_target("x86_64", frozenset()) is None


def test_host_flags_reads_the_first_cpus_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert numba_target.host_flags(cpuinfo) == {"fpu", "avx2", "fma"}
    assert numba_target.host_flags(tmp_path / "missing") == frozenset()
    cpuinfo.write_text("processor\t: 0\nflagsome garbage\n")  # no flags line: the host is not pinned
    assert numba_target.host_flags(cpuinfo) == frozenset()
    assert numba_target.reference_target("x86_64", numba_target.host_flags(cpuinfo)) is None


def test_a_users_choice_wins_and_host_opts_out():
    assert numba_target.chosen_target({"NUMBA_CPU_NAME": "znver4"}) == "znver4"
    assert numba_target.chosen_target({"NEUROLAB_KERNEL_CPU": "host"}) is None


def _child(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES",
                                                                  "NEUROLAB_KERNEL_CPU")}
    environ.update(env, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                          env=environ, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() + "\n" + done.stderr


needs_reference = pytest.mark.skipif(REFERENCE is None,
                                     reason="this host cannot run the reference target")

COMPILE_AND_REPORT = (
    "import numba\n"
    "@numba.njit\n"
    "def f(x):\n"
    "    return x + 1\n"
    "f(1)\n"
    "from numba.core.registry import cpu_target\n"
    "codegen = cpu_target.target_context.codegen()\n"
    "print(codegen._get_host_cpu_name(), repr(codegen._tm_features))\n")


@needs_reference
def test_numba_compiles_for_the_reference_target_once_the_emulator_is_imported():
    out = _child("import emulator.kernel\n" + COMPILE_AND_REPORT)
    assert out.startswith(f"{REFERENCE} ''"), out
    # the kernel library's compiler child and the FPGA child inherit the choice
    assert _child("import drivers, os; print(os.environ['NUMBA_CPU_NAME'])").startswith(REFERENCE)


@needs_reference
def test_opting_out_compiles_for_the_host():
    out = _child("import emulator.kernel\n" + COMPILE_AND_REPORT, NEUROLAB_KERNEL_CPU="host")
    assert not out.startswith(f"{REFERENCE} ''"), out


@needs_reference
def test_numba_code_compiled_before_neurolab_is_imported_gets_a_warning():
    out = _child(COMPILE_AND_REPORT + "import drivers\n")
    assert "follow this host's CPU" in out, out
