"""Event routing: from a spike (or an FPGA input) to the synapses it reaches, as CSR tables.

Routing semantics (chip facts, ``dynapse_protocol.md`` §1, §5):

* The four chips sit in a 2x2 grid: U0 top-left (x 0, row 0), U1 top-right (1, 0), U2 bottom-left
  (0, 1), U3 bottom-right (1, 1).  An SRAM entry moves the spike ``dx`` hops east (sx = 0, +x) or
  west (sx = 1) and ``dy`` hops north (sy = 0, towards row 0) or south (sy = 1).
* If the destination lies inside the grid, the spike is broadcast to the cores of the destination
  chip selected by the one-hot ``core_mask``, carrying the source address (virtual core, neuron id
  within its core).  Every neuron there whose CAM holds that address receives one synaptic event
  per matching entry type; ``n`` matching entries of the same type add up with the on-chip
  saturation (``EmulatorConfig.cam_saturation_*``).
* A route is a displacement: the spike ends ``dx`` columns and ``dy`` rows away (the hop order
  does not matter for where it ends).  If it ends on the FPGA's position in the mesh, just south
  of U2 (the FPGA handshakes only U2's south output, user guide §7; all four of libcaer's cell-0
  routes end there), the spike goes to the FPGA and so to the host.  A route that ends anywhere
  else outside the grid reaches nothing and is dropped.  The FPGA forwards the mask's 4 bits and libcaer reads them as ``chip id + 1``; the host therefore
  sees chip ``core_mask - 1`` (with libcaer's default routes that is the source chip).  For masks
  above 4, which would decode to a chip id the board does not have, the emulator reports the
  source chip.  The host sees the *virtual* core as the source core.
* A mask of 0 routes nowhere.  Routing within the grid has no delay in the emulator.

Inputs from the FPGA spike generator, the Poisson generator and host-injected spikes enter the
same tables as addresses arriving at a chip's cores.

The tables are rebuilt only when CAM or SRAM change.  An *input key* names one address arriving at
one core: ``key = chip*4096 + core*1024 + virtual_core*256 + neuron``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.topology import (
    N_CHIPS,
    N_CORES_PER_CHIP,
    N_NEURONS,
    N_NEURONS_PER_CHIP,
    N_NEURONS_PER_CORE,
)

from .chip_state import ChipTables

N_KEYS = N_CHIPS * N_CORES_PER_CHIP * N_NEURONS_PER_CHIP  # 16384


def input_key(chip: np.ndarray | int, core: np.ndarray | int, address: np.ndarray | int) -> np.ndarray | int:
    """Key of source ``address`` (virtual core*256 + neuron, 0..1023) arriving at (chip, core)."""
    return (chip * N_CORES_PER_CHIP + core) * N_NEURONS_PER_CHIP + address


#: ``route_destination`` of a route that ends on the FPGA (the host) and of one that ends nowhere.
TO_HOST = -1
OFF_BOARD = -2
#: The FPGA's (column, row) in the chip mesh: south of U2 (row 2 is one below the 2x2 grid).
FPGA_POSITION = (0, 2)


def route_destination(chip: int, sx: int, dx: int, sy: int, dy: int) -> int:
    """Destination chip of an SRAM route from ``chip``; :data:`TO_HOST` when it ends on the FPGA,
    :data:`OFF_BOARD` when it leaves the grid anywhere else (the spike is lost)."""
    x = (chip & 1) + (dx if sx == 0 else -dx)
    row = (chip >> 1) + (dy if sy == 1 else -dy)
    if 0 <= x <= 1 and 0 <= row <= 1:
        return row * 2 + x
    return TO_HOST if (x, row) == FPGA_POSITION else OFF_BOARD


def saturated_count(n: np.ndarray, saturation_count: float, sharpness: float) -> np.ndarray:
    """Effective multiplicity of ``n`` parallel CAM entries: linear, then saturating smoothly."""
    n = np.asarray(n, dtype=np.float64)
    return n / (1.0 + (n / saturation_count) ** sharpness) ** (1.0 / sharpness)


@dataclass(frozen=True)
class RoutingTables:
    """CSR tables used by the engine.

    key_ptr, key_target, key_type, key_weight, key_count
        For input key k, entries ``key_ptr[k]:key_ptr[k+1]`` list target neuron (gid), synapse
        type, effective multiplicity (saturated CAM count) and the CAM count itself (1..64).
    neuron_key_ptr, neuron_keys
        For neuron gid, the input keys its spike reaches inside the grid (all SRAM cells, all
        cores of each mask).
    host_chip, host_core
        (4096, 4): per SRAM cell, the chip and core the host sees when that cell routes the
        neuron's spike to the FPGA; -1 where the cell does not route to the host.
    """

    key_ptr: np.ndarray
    key_target: np.ndarray
    key_type: np.ndarray
    key_weight: np.ndarray
    key_count: np.ndarray
    neuron_key_ptr: np.ndarray
    neuron_keys: np.ndarray
    host_chip: np.ndarray
    host_core: np.ndarray

    @property
    def n_synapses(self) -> int:
        """Number of (key, target, type) synapses, i.e. distinct CAM listening groups."""
        return len(self.key_target)


def build_routing(tables: ChipTables, saturation_count: float, sharpness: float,
                  cleared_cam_listens: bool) -> RoutingTables:
    """Precompute the CSR routing tables from the CAM and SRAM contents."""
    # --- CAM side: which (target, type) listens to which key, and how many entries --------------
    gid = np.repeat(np.arange(N_NEURONS), tables.cam_core.shape[1])
    cam_core = tables.cam_core.ravel().astype(np.int64)
    cam_neuron = tables.cam_neuron.ravel().astype(np.int64)
    cam_type = tables.cam_type.ravel().astype(np.int64)
    if not cleared_cam_listens:
        keep = tables.cam_written.ravel()
        gid, cam_core, cam_neuron, cam_type = gid[keep], cam_core[keep], cam_neuron[keep], cam_type[keep]
    chip = gid // N_NEURONS_PER_CHIP
    core = (gid % N_NEURONS_PER_CHIP) // N_NEURONS_PER_CORE
    keys = input_key(chip, core, cam_core * N_NEURONS_PER_CORE + cam_neuron)
    # One row per distinct (key, target, type) with its CAM count; sorted by key for the CSR.
    combined = (keys * N_NEURONS + gid) * 4 + cam_type
    unique, counts = np.unique(combined, return_counts=True)
    key_of = unique // (4 * N_NEURONS)
    key_ptr = np.zeros(N_KEYS + 1, np.int64)
    np.cumsum(np.bincount(key_of, minlength=N_KEYS), out=key_ptr[1:])
    key_target = ((unique // 4) % N_NEURONS).astype(np.int32)
    key_type = (unique % 4).astype(np.int8)
    key_weight = saturated_count(counts, saturation_count, sharpness)

    # --- SRAM side: which keys each neuron's spike reaches, and host routes -----------------------
    sram = tables.sram.astype(np.int64)
    host_chip = np.full((N_NEURONS, sram.shape[1]), -1, np.int16)
    host_core = np.full((N_NEURONS, sram.shape[1]), -1, np.int16)
    src_chip = np.arange(N_NEURONS) // N_NEURONS_PER_CHIP
    src_address = np.arange(N_NEURONS) % N_NEURONS_PER_CORE
    dest_lookup = np.array([[[[[route_destination(c, sx, dx, sy, dy) for dy in range(4)] for sy in range(2)]
                              for dx in range(4)] for sx in range(2)] for c in range(N_CHIPS)])
    reach_src: list[np.ndarray] = []
    reach_key: list[np.ndarray] = []
    for cell in range(sram.shape[1]):
        vcore, sx, dx, sy, dy, mask = (sram[:, cell, f] for f in range(6))
        dest = dest_lookup[src_chip, sx, dx, sy, dy]
        routed = mask != 0
        to_host = routed & (dest == TO_HOST)
        chip_field = (mask >= 1) & (mask <= N_CHIPS)  # libcaer writes chip id + 1 into the mask
        host_chip[to_host, cell] = np.where(chip_field, mask - 1, src_chip)[to_host]
        host_core[to_host, cell] = vcore[to_host]
        in_grid = routed & (dest >= 0)
        for dest_core in range(N_CORES_PER_CHIP):
            hit = in_grid & ((mask >> dest_core) & 1 == 1)
            src = np.nonzero(hit)[0]
            reach_src.append(src)
            reach_key.append(input_key(dest[src], dest_core, vcore[src] * N_NEURONS_PER_CORE + src_address[src]))
    src_all = np.concatenate(reach_src)
    key_all = np.concatenate(reach_key)
    order = np.argsort(src_all, kind="stable")
    neuron_key_ptr = np.zeros(N_NEURONS + 1, np.int64)
    np.cumsum(np.bincount(src_all, minlength=N_NEURONS), out=neuron_key_ptr[1:])
    return RoutingTables(
        key_ptr=key_ptr,
        key_target=key_target,
        key_type=key_type,
        key_weight=key_weight,
        key_count=counts.astype(np.uint8),
        neuron_key_ptr=neuron_key_ptr,
        neuron_keys=key_all[order].astype(np.int32),
        host_chip=host_chip,
        host_core=host_core,
    )
