"""The noise-free kernel as a plain shared library, so an emulator process needs no numba or LLVM.

Why: importing numba maps LLVM (``libllvmlite.so``, 178 MB) and its first call sets up the
JIT; together about 170 MB of the emulator's resident memory before it simulates anything.  The
same machine code can be made once, ahead of time:

1. a child process (``python -m emulator.kernel_library OUT``) compiles
   :func:`emulator.kernel.simulate_quiet` with numba exactly as the JIT does (same LLVM IR, same
   host CPU name and features), inside a C-callable entry that unpacks its arguments;
2. LLVM writes it as a position-independent object file, which the system C compiler links into
   ``kernel-<key>.so`` (under ``~/.cache/neurolab/kernel`` or ``$NEUROLAB_KERNEL_CACHE``);
3. the emulator loads that file with ctypes, which releases the GIL for the call, so partitions
   still run in parallel threads.

The key hashes the kernel's source, the numba, llvmlite and Python versions, the CPU (model
and flags) and the target the code is compiled for (:mod:`drivers.numba_target`), so a change of
any of them builds a new library.  The library computes bit for bit
what the JIT-compiled kernel computes (``tests/test_emulator_pinned.py`` runs through it, and
``tests/test_emulator_kernel.py`` compares the two).  Where no library can be built (no C
compiler) or loaded, :func:`quiet_kernel` falls back to the JIT-compiled function and says so once.
Runs with input noise always use the JIT :func:`emulator.kernel.simulate`: numba's random
generator lives in numba's runtime.

``NEUROLAB_KERNEL=jit`` skips the library (for comparisons).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drivers import numba_target

from . import engine

#: Arrays of :func:`emulator.kernel.simulate_quiet` in the order of the entry's address block,
#: with their dtypes (the entry reinterprets raw memory, so every one is checked before a call).
ARRAYS: tuple[tuple[str, type], ...] = (
    ("block_start", np.int64), ("st", np.float32), ("pr", np.float32), ("key_ptr", np.int32),
    ("key_entry", np.uint16), ("weight_of_count", np.float32), ("jump", np.float32),
    ("spike_ptr", np.int32), ("spike_entry", np.uint32), ("in_step", np.int64), ("in_key", np.int32),
    ("monitor_gid", np.int32), ("monitor_out", np.float32), ("spike_step", np.int64), ("spike_gid", np.int32),
    ("spiked", np.uint8), ("spiked_words", np.uint64), ("work", np.float32), ("touch_sink", np.int64),
)
#: Address block: (address, length) per array, monitor_out's column count, then n_steps,
#: block_len and the two results (spikes, steps done).
_MONITOR_COLUMNS = 2 * len(ARRAYS)
_N_STEPS, _BLOCK_LEN, _OUT_SPIKES, _OUT_STEPS = _MONITOR_COLUMNS + 1, _MONITOR_COLUMNS + 2, \
    _MONITOR_COLUMNS + 3, _MONITOR_COLUMNS + 4
_N_INTS = _MONITOR_COLUMNS + 5
_ENTRY_SYMBOL_FILE = ".entry"
_SOURCES = ("engine.py", "kernel.py", "kernel_library.py")

_loaded: Callable | None = None
_warned = False


def _cpu_identity() -> str:
    """Model name and feature flags of this CPU (what the compiled code is specialised for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "vendor_id", "cpu family",
                                                            "model\t"))]
    return "\n".join(sorted(set(lines)))


def library_key() -> str:
    """Hash naming the library built from this kernel source for this CPU and toolchain."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _SOURCES:
        digest.update((here / name).read_bytes())
    for dist in ("numba", "llvmlite"):
        digest.update(importlib.metadata.version(dist).encode())
    digest.update(sys.version.encode() + platform.machine().encode() + _cpu_identity().encode())
    digest.update(repr(numba_target.chosen_target()).encode())  # the code is compiled for this target
    return digest.hexdigest()[:24]


def cache_dir() -> Path:
    return Path(os.environ.get("NEUROLAB_KERNEL_CACHE", Path.home() / ".cache" / "neurolab" / "kernel"))


def library_path() -> Path:
    return cache_dir() / f"kernel-{library_key()}.so"


def build_library(path: Path, timeout_s: float = 900.0) -> None:
    """Build the library at ``path`` in a child process (numba and LLVM never enter this one).

    Concurrent builders wait for each other (a lock file next to it).  Raises ``RuntimeError``
    without a C compiler, or with the child's output when the build fails; a failure is written
    next to the library (``.failed``) so that later processes fall back at once instead of
    compiling again.
    """
    compiler = os.environ.get("CC", "cc")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C compiler ({compiler}) to link the kernel library")
    path.parent.mkdir(parents=True, exist_ok=True)
    failed = path.with_suffix(".failed")  # a failed build is not retried by every process
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            return
        if failed.exists():
            raise RuntimeError(f"building the kernel library failed before (remove {failed} to retry): "
                               f"{failed.read_text()[-500:]}")
        done = subprocess.run([sys.executable, "-m", "emulator.kernel_library", str(path)], capture_output=True,
                              text=True, timeout=timeout_s, cwd=str(Path(__file__).parent.parent))
        if done.returncode != 0 or not path.exists():
            message = f"({done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
            failed.write_text(message)
            raise RuntimeError(f"building the kernel library failed {message}")


def _load(path: Path) -> Callable:
    library = ctypes.CDLL(str(path))
    symbol = Path(str(path) + _ENTRY_SYMBOL_FILE).read_text().strip()
    entry = library[symbol]
    entry.restype = None
    entry.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    def simulate_quiet(n_steps, block_start, block_len, i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp,
                       st, pr, key_ptr, key_entry, weight_of_count, jump, spike_ptr, spike_entry,
                       in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid, spiked, spiked_words,
                       work, touch_sink):
        arrays = (block_start, st, pr, key_ptr, key_entry, weight_of_count, jump, spike_ptr, spike_entry,
                  in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid, spiked, spiked_words, work,
                  touch_sink)
        ints = np.zeros(_N_INTS, np.int64)
        for k, ((name, dtype), array) in enumerate(zip(ARRAYS, arrays, strict=True)):
            if not (isinstance(array, np.ndarray) and array.dtype == dtype and array.flags.c_contiguous
                    and array.flags.writeable):
                raise TypeError(f"kernel argument {name} must be a writeable C-contiguous {np.dtype(dtype)} array")
            ints[2 * k] = array.ctypes.data
            ints[2 * k + 1] = array.shape[0] if array.ndim else 1
        if monitor_out.ndim != 2 or monitor_out.shape[0] < n_steps:
            raise ValueError("monitor_out must be (n_steps, slots)")
        if (st.shape[0] != engine.N_STATE * engine.ROW or pr.shape[0] != engine.N_PARAM * engine.ROW
                or work.shape[0] < engine.WORK_LEN or touch_sink.shape[0] < 1):
            raise ValueError("kernel state, parameter or scratch array of the wrong size")
        ints[_MONITOR_COLUMNS] = monitor_out.shape[1]
        ints[_N_STEPS], ints[_BLOCK_LEN] = int(n_steps), int(block_len)
        floats = np.array([i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp], np.float64)
        entry(ints.ctypes.data, floats.ctypes.data)  # ctypes releases the GIL for the call
        return int(ints[_OUT_SPIKES]), int(ints[_OUT_STEPS])

    return simulate_quiet


def quiet_kernel() -> Callable:
    """:func:`emulator.kernel.simulate_quiet` from the shared library (built on first use), or the
    JIT-compiled function where that is not possible."""
    global _loaded, _warned
    if _loaded is not None:
        return _loaded
    if os.environ.get("NEUROLAB_KERNEL", "") != "jit":
        try:
            path = library_path()
            if not path.exists():
                build_library(path)
            _loaded = _load(path)
            return _loaded
        except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
            if not _warned:
                warnings.warn(f"emulator kernel library unavailable ({exc}); using the JIT-compiled kernel",
                              RuntimeWarning, stacklevel=2)
                _warned = True
    from .kernel import simulate_quiet

    _loaded = simulate_quiet
    return _loaded


#: numba runtime functions the entry references only on paths it never takes: reference counting
#: of arrays that own memory (the entry's arrays own none) and raising exceptions (nothing in the
#: kernel raises).  The library defines them as stubs that abort with a message, so a path that
#: should never run cannot go on silently.  Python's own C-API symbols resolve from the process.
_UNREACHABLE_RUNTIME = ("NRT_Free", "NRT_MemInfo_call_dtor", "numba_do_raise", "numba_gil_ensure",
                        "numba_gil_release", "numba_runtime_build_excinfo_struct", "numba_unpickle")
_LIBC = ("log", "logf", "exp", "expf", "memset", "memcpy", "memmove", "abort")


def _stub_source(names: list[str]) -> str:
    lines = ["#include <stdio.h>", "#include <stdlib.h>"]
    for name in names:
        lines.append(f'void {name}(void) {{ fputs("neurolab kernel library: numba runtime function {name} '
                     f'reached\\n", stderr); abort(); }}')
    return "\n".join(lines) + "\n"


def _compile(out: Path) -> None:
    """(In the child process.)  Compile the entry with numba and link it into ``out``."""
    import llvmlite.binding as llvm
    from numba import carray, cfunc, types
    from numba.core import config
    from numba.extending import intrinsic

    from .kernel import simulate_quiet

    @intrinsic
    def pointer(typingctx, address, dtype):
        pointer_type = types.CPointer(dtype.instance_type)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer_type))

        return pointer_type(address, dtype), codegen

    @cfunc(types.void(types.CPointer(types.int64), types.CPointer(types.float64)), nopython=True, nogil=True,
           error_model="numpy")
    def entry(int_block, float_block):
        a = carray(int_block, _N_INTS)
        f = carray(float_block, 5)
        n_spikes, steps_done = simulate_quiet(
            a[_N_STEPS], carray(pointer(a[0], np.int64), a[1]), a[_BLOCK_LEN], f[0], f[1], f[2], f[3], f[4],
            carray(pointer(a[2], np.float32), a[3]), carray(pointer(a[4], np.float32), a[5]),
            carray(pointer(a[6], np.int32), a[7]), carray(pointer(a[8], np.uint16), a[9]),
            carray(pointer(a[10], np.float32), a[11]), carray(pointer(a[12], np.float32), a[13]),
            carray(pointer(a[14], np.int32), a[15]), carray(pointer(a[16], np.uint32), a[17]),
            carray(pointer(a[18], np.int64), a[19]), carray(pointer(a[20], np.int32), a[21]),
            carray(pointer(a[22], np.int32), a[23]),
            carray(pointer(a[24], np.float32), (a[25], a[_MONITOR_COLUMNS])),
            carray(pointer(a[26], np.int64), a[27]), carray(pointer(a[28], np.int32), a[29]),
            carray(pointer(a[30], np.uint8), a[31]), carray(pointer(a[32], np.uint64), a[33]),
            carray(pointer(a[34], np.float32), a[35]), carray(pointer(a[36], np.int64), a[37]))
        a[_OUT_SPIKES] = n_spikes
        a[_OUT_STEPS] = steps_done

    library = entry._library
    codegen = library.codegen
    # numba's JIT target machine, but position-independent code for a shared library
    target = llvm.Target.from_triple(llvm.get_process_triple())
    machine = target.create_target_machine(cpu=codegen._get_host_cpu_name(), features=codegen._tm_features,
                                           opt=config.OPT, reloc="pic", codemodel="default")
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        obj = Path(tmp) / "kernel.o"
        obj.write_bytes(machine.emit_object(library._final_module))
        undefined = set(subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True).stdout.split())
        unexpected = sorted(undefined - {"U"} - set(_UNREACHABLE_RUNTIME) - set(_LIBC)
                            - {s for s in undefined if s.startswith(("Py", "_Py"))})
        if unexpected:
            raise RuntimeError(f"the kernel needs symbols of numba's runtime: {unexpected}")
        stubs = Path(tmp) / "stubs.c"
        stubs.write_text(_stub_source(sorted(undefined & set(_UNREACHABLE_RUNTIME))))
        tmp_so = Path(tmp) / "kernel.so"
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(tmp_so), str(obj), str(stubs), "-lm"], check=True,
                       capture_output=True)
        Path(str(tmp_so) + _ENTRY_SYMBOL_FILE).write_text(entry.native_name)
        # the entry symbol first, then the library: a reader that sees the library sees its entry
        os.replace(str(tmp_so) + _ENTRY_SYMBOL_FILE, str(out) + _ENTRY_SYMBOL_FILE)
        os.replace(tmp_so, out)


if __name__ == "__main__":
    _compile(Path(sys.argv[1]))
