"""Compile a :class:`Netlist` into CAM and SRAM chip words, checking the hardware limits.

Rules
-----
* **CAM (fan-in).** Each connection becomes ``multiplicity`` CAM entries on the post neuron,
  listening to the source's 10-bit address (core, neuron) with the connection's synapse type.
  A post neuron may use at most 64 entries; every one of its 64 entries is written, unused
  ones with libcaer's "cleared" word (type GABA_B, address core 0 neuron 0 — on silicon a
  cleared entry therefore still listens to that address, exactly as after libcaer's CLEAR_CAM).
* **SRAM (fan-out).** A physical source neuron needs one SRAM cell per destination chip; the
  cell's core mask is the union of the destination cores on that chip and its virtual core is
  the neuron's own core (so the CAM address is the real one).  Cell 0 stays the host route
  (libcaer's default) for every neuron whose SRAM is written, so its spikes still reach the
  host: that leaves 3 cells, i.e. at most 3 destination chips per source neuron.  FPGA/Poisson
  inputs need no SRAM.
* **Monitored neurons** (``netlist.monitored``, or every post neuron when it is empty, the
  :class:`Netlist` contract) get their host route in cell 0 written even if they send nowhere.
* **Aliasing.** The CAM does not store the source chip, so two different sources with the same
  (core, neuron) address that both reach a destination core are indistinguishable there.
  Every such pair is reported as a warning (not an error: it is sometimes intended).

Limit violations raise :class:`NetlistError` naming the neuron and the count; nothing is
returned half-compiled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from . import chip_words as cw
from .netlist import InputAddress, Netlist, NeuronAddress
from .topology import CAM_ENTRIES_PER_NEURON, N_NEURONS_PER_CORE, SRAM_ENTRIES_PER_NEURON, SynapseType


class NetlistError(ValueError):
    """The netlist does not fit the hardware (names the neuron and the limit)."""


@dataclass
class CompiledNetlist:
    """Chip words per chip, ready for CHIP/CONTENT, plus human-readable warnings."""

    cam_words: dict[int, list[int]] = field(default_factory=dict)
    sram_words: dict[int, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def words_by_chip(self) -> dict[int, list[int]]:
        """SRAM then CAM words of each chip (routes first, so nothing fires into a half-written CAM)."""
        chips = sorted(set(self.cam_words) | set(self.sram_words))
        return {c: self.sram_words.get(c, []) + self.cam_words.get(c, []) for c in chips}


def _chip_global(n: NeuronAddress) -> int:
    return n.core * N_NEURONS_PER_CORE + n.neuron


def _label(n: NeuronAddress | InputAddress) -> str:
    if isinstance(n, InputAddress):
        return f"input (chip {n.chip}, core {n.core}, neuron {n.neuron})"
    return f"neuron (chip {n.chip}, core {n.core}, neuron {n.neuron})"


def compile_netlist(netlist: Netlist) -> CompiledNetlist:
    """CAM/SRAM words for ``netlist``; raises :class:`NetlistError` when a limit is exceeded."""
    out = CompiledNetlist()

    # ---- CAM ----
    fan_in: dict[NeuronAddress, list[tuple[int, int, SynapseType]]] = defaultdict(list)
    for c in netlist.connections:
        fan_in[c.post].extend([(c.pre.core, c.pre.neuron, c.synapse)] * c.multiplicity)
    for post, entries in fan_in.items():
        if len(entries) > CAM_ENTRIES_PER_NEURON:
            raise NetlistError(f"{_label(post)} needs {len(entries)} CAM entries; the limit is {CAM_ENTRIES_PER_NEURON}")
    for post, entries in sorted(fan_in.items(), key=lambda kv: (kv[0].chip, kv[0].core, kv[0].neuron)):
        gid = _chip_global(post)
        words = out.cam_words.setdefault(post.chip, [])
        for i in range(CAM_ENTRIES_PER_NEURON):
            core, neuron, syn = entries[i] if i < len(entries) else (0, 0, SynapseType.GABA_B)
            words.append(cw.encode_cam_word(gid, i, core, neuron, syn))

    # ---- SRAM ----
    monitored = set(netlist.monitored) if netlist.monitored else {c.post for c in netlist.connections}
    destinations: dict[NeuronAddress, dict[int, int]] = defaultdict(dict)  # source → chip → core mask
    for c in netlist.connections:
        if isinstance(c.pre, NeuronAddress):
            masks = destinations[c.pre]
            masks[c.post.chip] = masks.get(c.post.chip, 0) | (1 << c.post.core)
    sources = set(destinations) | monitored
    for src in sorted(sources, key=lambda n: (n.chip, n.core, n.neuron)):
        routes = sorted(destinations.get(src, {}).items())
        needed = len(routes) + 1
        if needed > SRAM_ENTRIES_PER_NEURON:
            raise NetlistError(
                f"{_label(src)} needs {needed} SRAM cells ({len(routes)} destination chips + the host route "
                f"in cell 0); the limit is {SRAM_ENTRIES_PER_NEURON}"
            )
    for src in sorted(sources, key=lambda n: (n.chip, n.core, n.neuron)):
        gid = _chip_global(src)
        cells: list[int] = [cw.host_route_sram_word(src.chip, gid)]
        for dest_chip, mask in sorted(destinations.get(src, {}).items()):
            cells.append(cw.encode_sram_word(gid, len(cells), src.core, cw.route_between(src.chip, dest_chip), mask))
        while len(cells) < SRAM_ENTRIES_PER_NEURON:
            cells.append(cw.encode_sram_word(gid, len(cells), 0, cw.Route(), 0))
        out.sram_words.setdefault(src.chip, []).extend(cells)

    out.warnings = _aliasing_warnings(netlist, destinations)
    return out


def _aliasing_warnings(netlist: Netlist, destinations: dict[NeuronAddress, dict[int, int]]) -> list[str]:
    """Sources sharing a (core, neuron) address that reach the same destination (chip, core)."""
    arriving: dict[tuple[int, int], dict[tuple[int, int], set]] = defaultdict(lambda: defaultdict(set))
    for src, masks in destinations.items():
        for chip, mask in masks.items():
            for core in range(4):
                if mask >> core & 1:
                    arriving[(chip, core)][(src.core, src.neuron)].add(src)
    for c in netlist.connections:
        if isinstance(c.pre, InputAddress):
            arriving[(c.post.chip, c.post.core)][(c.pre.core, c.pre.neuron)].add(c.pre)
    warnings = []
    for (chip, core), by_address in sorted(arriving.items()):
        for (a_core, a_neuron), srcs in sorted(by_address.items()):
            if len(srcs) > 1:
                names = ", ".join(sorted(_label(s) for s in srcs))
                warnings.append(
                    f"CAM aliasing on chip {chip} core {core}: address (core {a_core}, neuron {a_neuron}) "
                    f"is sent by {names}; their spikes are indistinguishable there"
                )
    return warnings
