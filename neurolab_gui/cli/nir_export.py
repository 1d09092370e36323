"""``neurolab convert --nir OUT``: write the constrained spiking network as a NIR graph.

Kept out of :mod:`.convert` so that module only gains the option and one call.
"""

from __future__ import annotations

import sys
from pathlib import Path


def write_nir_file(result, out: str | Path) -> int:
    """Write ``result.constrained`` (with its mapped time constants) to ``out``; returns an exit code.

    A failed write (disk full, ...) is one ``error: writing --nir OUT failed: REASON`` line and exit
    code 1, as for ``convert``'s ``--json`` (the conversion ran; the disk failed); nothing is left
    beside ``out``.
    """
    from neurolab_gui.core.conversion.nir_io import write_nir

    try:
        path = write_nir(result.constrained, out, result.mapped.time, result.mapped.settings)
    except OSError as exc:  # strerror alone: the temporary file's name would only confuse
        print(f"error: writing --nir {out} failed: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a network NIR cannot describe (convert hands it only leaky ones)
        print(f"error: cannot export --nir {out}: {exc}", file=sys.stderr)
        return 2
    net = result.constrained
    print(
        f"NIR graph written to {path} (CubaLIF, {net.n_hidden} units, {net.n_inputs} inputs, tau_syn {result.mapped.time.tau_s * 1e3:.1f} ms)"
    )
    return 0
