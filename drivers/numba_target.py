"""One CPU target for every numba-compiled kernel of NeuroLab, so the emulator computes the same bits
on every x86-64 machine.

Why: numba compiles for the host CPU by default, and LLVM then picks vector widths and instruction
orders by the CPU *model*, not only by its instruction sets.  The emulator kernel is float32 with
``fastmath``, so a different order of additions moves low bits, and a spike somewhere crosses its
threshold a step earlier or later.  The same kernel and seed gave three different outputs on AMD
Zen 4 (512-bit vectors), on Intel Sapphire/Emerald Rapids (AVX-512 with 256-bit vectors preferred)
and for a Haswell-class target: a mismatched board's accuracy, a pinned test's hash and a
calibration bench's numbers then depend on which machine ran them.

So NeuroLab compiles for a fixed reference target instead of the host's model: LLVM's
``skylake-avx512`` (x86-64-v4) on every x86-64 host with AVX-512 (Intel since Skylake-SP, AMD
Zen 4), else ``haswell`` (x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE) on every AVX2 host (Intel
Haswell, AMD Zen).  Hosts of one class then compute the same bits (the kernel also avoids the one kind
of x86 instruction whose bits differ by vendor, approximate reciprocals: :data:`emulator.kernel.KERNEL_FASTMATH`);
the two classes differ from each other in the last bits, as any two targets do.  Two targets rather than one because the AVX2 code
costs AVX-512 hosts speed (kernel 1.65 against 1.40 ns per neuron-step on Emerald Rapids; see
docs/decisions.md, "One CPU target per instruction-set level for the compiled kernels").  On other
machines (no AVX2, ARM, no ``/proc/cpuinfo``) numba keeps compiling for the host.

How: numba reads ``NUMBA_CPU_NAME`` / ``NUMBA_CPU_FEATURES`` when it is imported, and its CPU code
generator reads the parsed values once, when it is first used.  :func:`pin_numba_target` runs when
``drivers`` is imported (``drivers/__init__.py``; ``emulator`` imports ``drivers`` first), before any
NeuroLab module imports numba.  It sets the variables, which child processes inherit (the emulator's
FPGA child, the kernel library's compiler), and, where numba is already imported but has compiled
nothing yet, its parsed configuration too.  A user's own ``NUMBA_CPU_NAME`` is left alone, and
``NEUROLAB_KERNEL_CPU=host`` compiles for the host instead (e.g. to compare speed).  The cost on hosts with AVX-512: see docs/decisions.md ("One CPU target for the
compiled kernels").
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from pathlib import Path

#: The reference targets, best first: LLVM's CPU name and the ``/proc/cpuinfo`` flags a host needs to
#: run its code (x86-64-v4 and x86-64-v3; ``abm`` is how Linux names LZCNT).
X86_64_V3_FLAGS = frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})
X86_64_V4_FLAGS = X86_64_V3_FLAGS | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
REFERENCE_TARGETS: tuple[tuple[str, frozenset[str]], ...] = (
    ("skylake-avx512", X86_64_V4_FLAGS),
    ("haswell", X86_64_V3_FLAGS),
)


def host_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The feature flags of this machine's first CPU (empty where ``/proc/cpuinfo`` cannot be read)."""
    try:
        with cpuinfo.open() as lines:  # the first CPU's block only (the file holds one per CPU)
            flags = next((line for line in lines if line.startswith("flags") and ":" in line), None)
    except OSError:
        return frozenset()
    return frozenset(flags.split(":", 1)[1].split()) if flags is not None else frozenset()


def reference_target(machine: str | None = None, flags: frozenset[str] | None = None) -> str | None:
    """The best reference target this host runs (None: none; numba then compiles for the host)."""
    machine = platform.machine() if machine is None else machine
    if machine.lower() not in ("x86_64", "amd64"):
        return None
    flags = host_flags() if flags is None else flags
    return next((name for name, needed in REFERENCE_TARGETS if needed <= flags), None)


def chosen_target(environ: os._Environ | dict | None = None) -> str | None:
    """The CPU numba compiles for in this process tree: a user's own ``NUMBA_CPU_NAME``, else
    :func:`reference_target` where the host runs one, else None (the host, unpinned)."""
    env = os.environ if environ is None else environ
    if env.get("NUMBA_CPU_NAME"):
        return env["NUMBA_CPU_NAME"]
    if env.get("NEUROLAB_KERNEL_CPU", "").lower() == "host":
        return None
    return reference_target()


def pin_numba_target() -> str | None:
    """Make numba compile for :func:`chosen_target`; returns it (None: the host).  Idempotent."""
    target = chosen_target()
    if target is None or os.environ.get("NUMBA_CPU_NAME"):
        return target
    os.environ["NUMBA_CPU_NAME"] = target
    os.environ["NUMBA_CPU_FEATURES"] = ""  # the target's own feature set, not the host's
    config = sys.modules.get("numba.core.config")
    if config is not None and getattr(config, "CPU_NAME", None) is None:
        config.CPU_NAME, config.CPU_FEATURES = target, ""
        registry = sys.modules.get("numba.core.registry")
        cpu_target = getattr(registry, "cpu_target", None)
        if cpu_target is not None and "_toplevel_target_context" in vars(cpu_target):
            warnings.warn("numba compiled code before NeuroLab was imported, so its kernels follow this host's "
                          "CPU and may differ in the last bits from other machines; import drivers or emulator "
                          "before other numba code to get the reference target", RuntimeWarning, stacklevel=2)
    return target
