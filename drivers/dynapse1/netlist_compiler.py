"""Compile a :class:`Netlist` into CAM and SRAM chip words, checking the hardware limits.

Rules
-----
* **CAM (fan-in).** Each connection becomes ``multiplicity`` CAM entries on the post neuron,
  listening to the source's 10-bit *tag* (core, neuron) with the connection's synapse type.
  A post neuron may use at most 64 entries; every one of its 64 entries is written, unused
  ones with libcaer's "cleared" word (type GABA_B, address core 0 neuron 0 — on silicon a
  cleared entry therefore still listens to that address, exactly as after libcaer's CLEAR_CAM).
* **FPGA inputs** reach only the chip they are injected on: a connection from an
  :class:`InputAddress` of chip A to a neuron of chip B is refused.  Their tag is their address.
* **SRAM (fan-out).** A physical source neuron needs one SRAM cell per destination chip; the
  cell's route is the mesh hops from its chip to that chip (x then y, :func:`chip_words.route_between`)
  and its core mask is the union of the destination cores there.  Cell 0 stays the host route
  (libcaer's default) for every neuron whose SRAM is written, so its spikes still reach the
  host: that leaves 3 cells, i.e. at most 3 destination chips per source neuron (its own
  included).  FPGA/Poisson inputs need no SRAM.
* **Tags and aliasing.** The CAM does not store the source chip: a spike arrives at a core as
  (virtual core, neuron id), where the virtual core is a field of the SRAM cell that sent it.
  Sources on the destination's own chip keep their real address (so all of them differ); FPGA
  inputs keep theirs.  A source on *another* chip gets, per destination chip, the first virtual
  core (its real core first) whose tag is free at every destination core of that cell — so two
  sources with the same address on different chips no longer collide.  Tag (core 0, neuron 0)
  is never handed out: cleared CAM entries listen to it.  Only four tags share a neuron id, so a
  core that hears more than four sources with one id cannot tell them apart: every collision that
  remains is reported as a warning naming the sources (not an error: it is sometimes intended;
  the conversion's mapping refuses it).

Limit violations raise :class:`NetlistError` naming the neuron and the count; nothing is
returned half-compiled.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from . import chip_words as cw
from .netlist import InputAddress, Netlist, NeuronAddress
from .topology import CAM_ENTRIES_PER_NEURON, N_CORES_PER_CHIP, N_NEURONS_PER_CORE, SRAM_ENTRIES_PER_NEURON, SynapseType

#: The tag a cleared CAM entry listens to (libcaer's CLEAR_CAM writes address 0).
CLEARED_TAG = (0, 0)


class NetlistError(ValueError):
    """The netlist does not fit the hardware (names the neuron and the limit)."""


@dataclass(frozen=True)
class SramRoute:
    """One SRAM cell of a source neuron that routes its spikes to a chip of the board."""

    source: NeuronAddress
    cell: int
    destination_chip: int
    core_mask: int
    virtual_core: int  # the tag's core: the receivers' CAMs listen to (virtual_core, source.neuron)
    route: cw.Route

    @property
    def inter_chip(self) -> bool:
        return self.destination_chip != self.source.chip


@dataclass
class CompiledNetlist:
    """Chip words per chip, ready for CHIP/CONTENT, the routes they encode and human-readable warnings."""

    cam_words: dict[int, list[int]] = field(default_factory=dict)
    sram_words: dict[int, list[int]] = field(default_factory=dict)
    routes: list[SramRoute] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def words_by_chip(self) -> dict[int, list[int]]:
        """SRAM then CAM words of each chip (routes first, so nothing fires into a half-written CAM)."""
        chips = sorted(set(self.cam_words) | set(self.sram_words))
        return {c: self.sram_words.get(c, []) + self.cam_words.get(c, []) for c in chips}

    @property
    def inter_chip_routes(self) -> list[SramRoute]:
        """The SRAM cells whose spikes cross from one chip to another."""
        return [r for r in self.routes if r.inter_chip]


def _chip_global(n: NeuronAddress) -> int:
    return n.core * N_NEURONS_PER_CORE + n.neuron


def _label(n: NeuronAddress | InputAddress) -> str:
    if isinstance(n, InputAddress):
        return f"input (chip {n.chip}, core {n.core}, neuron {n.neuron})"
    return f"neuron (chip {n.chip}, core {n.core}, neuron {n.neuron})"


def _order(n: NeuronAddress) -> tuple[int, int, int]:
    return (n.chip, n.core, n.neuron)


def compile_netlist(netlist: Netlist) -> CompiledNetlist:
    """CAM/SRAM words for ``netlist``; raises :class:`NetlistError` when a limit is exceeded."""
    out = CompiledNetlist()

    # ---- limits first: nothing is encoded for a netlist that does not fit ----
    fan_in: dict[NeuronAddress, int] = defaultdict(int)
    destinations: dict[NeuronAddress, dict[int, int]] = defaultdict(dict)  # source → chip → core mask
    for c in netlist.connections:
        fan_in[c.post] += c.multiplicity
        if isinstance(c.pre, InputAddress):
            if c.pre.chip != c.post.chip:
                raise NetlistError(
                    f"{_label(c.pre)} cannot reach {_label(c.post)}: an FPGA input reaches only the chip it is "
                    "injected on (add an input on that chip)"
                )
        else:
            masks = destinations[c.pre]
            masks[c.post.chip] = masks.get(c.post.chip, 0) | (1 << c.post.core)
    for post, n in fan_in.items():
        if n > CAM_ENTRIES_PER_NEURON:
            raise NetlistError(f"{_label(post)} needs {n} CAM entries; the limit is {CAM_ENTRIES_PER_NEURON}")
    monitored = set(netlist.monitored) if netlist.monitored else {c.post for c in netlist.connections}
    sources = sorted(set(destinations) | monitored, key=_order)
    for src in sources:
        needed = len(destinations.get(src, {})) + 1
        if needed > SRAM_ENTRIES_PER_NEURON:
            raise NetlistError(
                f"{_label(src)} needs {needed} SRAM cells ({needed - 1} destination chips + the host route "
                f"in cell 0); the limit is {SRAM_ENTRIES_PER_NEURON}"
            )

    # ---- tags: what each destination core hears, and the virtual core of every inter-chip cell ----
    heard: dict[tuple[int, int], dict[tuple[int, int], set]] = defaultdict(lambda: defaultdict(set))

    def hear(chip: int, mask: int, tag: tuple[int, int], src: NeuronAddress | InputAddress) -> None:
        for core in range(N_CORES_PER_CHIP):
            if mask >> core & 1:
                heard[(chip, core)][tag].add(src)

    for c in netlist.connections:
        if isinstance(c.pre, InputAddress):
            hear(c.post.chip, 1 << c.post.core, (c.pre.core, c.pre.neuron), c.pre)
    for src in sources:
        if src.chip in destinations.get(src, {}):
            hear(src.chip, destinations[src][src.chip], (src.core, src.neuron), src)
    virtual_core: dict[tuple[NeuronAddress, int], int] = {}
    for src in sources:
        for chip, mask in sorted(destinations.get(src, {}).items()):
            if chip == src.chip:
                virtual_core[(src, chip)] = src.core
                continue
            cores = [k for k in range(N_CORES_PER_CHIP) if mask >> k & 1]
            choices = [src.core] + [v for v in range(N_CORES_PER_CHIP) if v != src.core]
            free = [v for v in choices if (v, src.neuron) != CLEARED_TAG
                    and all(not heard[(chip, k)].get((v, src.neuron)) for k in cores)]
            v = free[0] if free else src.core
            virtual_core[(src, chip)] = v
            hear(chip, mask, (v, src.neuron), src)

    # ---- CAM ----
    entries: dict[NeuronAddress, list[tuple[int, int, SynapseType]]] = defaultdict(list)
    for c in netlist.connections:
        core = c.pre.core if isinstance(c.pre, InputAddress) else virtual_core[(c.pre, c.post.chip)]
        entries[c.post].extend([(core, c.pre.neuron, c.synapse)] * c.multiplicity)
    for post, listed in sorted(entries.items(), key=lambda kv: _order(kv[0])):
        gid = _chip_global(post)
        words = out.cam_words.setdefault(post.chip, [])
        for i in range(CAM_ENTRIES_PER_NEURON):
            core, neuron, syn = listed[i] if i < len(listed) else (0, 0, SynapseType.GABA_B)
            words.append(cw.encode_cam_word(gid, i, core, neuron, syn))

    # ---- SRAM ----
    for src in sources:
        gid = _chip_global(src)
        cells: list[int] = [cw.host_route_sram_word(src.chip, gid)]
        for dest_chip, mask in sorted(destinations.get(src, {}).items()):
            route = cw.route_between(src.chip, dest_chip)
            v = virtual_core[(src, dest_chip)]
            out.routes.append(SramRoute(src, len(cells), dest_chip, mask, v, route))
            cells.append(cw.encode_sram_word(gid, len(cells), v, route, mask))
        while len(cells) < SRAM_ENTRIES_PER_NEURON:
            cells.append(cw.encode_sram_word(gid, len(cells), 0, cw.Route(), 0))
        out.sram_words.setdefault(src.chip, []).extend(cells)

    out.warnings = _aliasing_warnings(heard)
    return out


def _aliasing_warnings(heard: dict[tuple[int, int], dict[tuple[int, int], set]]) -> list[str]:
    """Tags that more than one source sends to one destination core, and sources on the cleared tag."""
    warnings = []
    for (chip, core), by_tag in sorted(heard.items()):
        for (t_core, t_neuron), srcs in sorted(by_tag.items()):
            names = ", ".join(sorted(_label(s) for s in srcs))
            if len(srcs) > 1:
                warnings.append(
                    f"CAM aliasing on chip {chip} core {core}: address (core {t_core}, neuron {t_neuron}) "
                    f"is sent by {names}; their spikes are indistinguishable there"
                )
            elif (t_core, t_neuron) == CLEARED_TAG:
                warnings.append(
                    f"CAM aliasing on chip {chip} core {core}: {names} arrives as address (core 0, neuron 0), "
                    "which every cleared CAM entry there listens to (as GABA_B)"
                )
    return warnings
