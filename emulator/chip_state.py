"""Programmable tables of the four chips: CAM, SRAM, tau1/tau2 selection, analog-monitor choice.

All tables are numpy arrays indexed by the board-wide neuron id ``gid = chip*1024 + core*256 + n``.
Every write validates all its arguments before touching a table, so a bad call raises a
``ValueError`` naming the bad field and leaves the state unchanged.

CAM semantics (chip facts, ``dynapse_protocol.md`` §1, §5)
    Each neuron has 64 entries; an entry holds a source (core 0-3, neuron 0-255 within that core)
    and a synapse type.  It holds **no source chip**: an event with that address arriving from any
    chip (or from the FPGA) matches.  There is no valid bit: CLEAR_CAM writes type 0 (GABA_B) and
    address 0 into every entry, so a cleared entry listens to address (core 0, neuron 0) as a slow
    inhibitory synapse.  The emulator reproduces this (``EmulatorConfig.cleared_cam_listens_to_address_zero``).
    Power-up CAM content is modelled as cleared.

SRAM semantics
    Each neuron has 4 entries: virtual source core, sx, dx, sy, dy and a one-hot destination-core
    mask.  Mask 0 means "routed nowhere".  At power-up (and after :meth:`ChipTables.default_sram`)
    cell 0 of every neuron holds libcaer's route to the FPGA (see :mod:`emulator.routing`), the
    others are 0.  :meth:`ChipTables.clear_sram` writes 0 everywhere, *including* cell 0, so after
    it no spike reaches the host until routes are written again.
"""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.topology import (
    CAM_ENTRIES_PER_NEURON,
    N_CHIPS,
    N_CORES_PER_CHIP,
    N_NEURONS,
    N_NEURONS_PER_CHIP,
    N_NEURONS_PER_CORE,
    SRAM_ENTRIES_PER_NEURON,
    SynapseType,
    check_chip,
    check_core,
    check_neuron,
)

#: Column order of the SRAM table.
SRAM_FIELDS = ("virtual_core", "sx", "dx", "sy", "dy", "core_mask")

#: libcaer's default host route per chip: (sx, dx, sy, dy); the mask is chip id + 1.
DEFAULT_HOST_ROUTE: dict[int, tuple[int, int, int, int]] = {
    0: (0, 0, 1, 2),
    1: (1, 1, 1, 2),
    2: (0, 0, 1, 1),
    3: (1, 1, 1, 1),
}


def _check_range(name: str, value: int, low: int, high: int) -> int:
    if type(value) is int and low <= value <= high:  # the common case first: every word of a board's start-up comes here
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} {value} out of range {low}..{high}")
    return int(value)


def check_chip_neuron(neuron: int) -> int:
    """Validate a chip-local neuron id (0..1023 = core*256 + id within core)."""
    return _check_range("chip-local neuron id", neuron, 0, N_NEURONS_PER_CHIP - 1)


class ChipTables:
    """CAM, SRAM, tau2 and monitor tables of a whole board."""

    def __init__(self) -> None:
        n = N_NEURONS
        self.cam_core = np.zeros((n, CAM_ENTRIES_PER_NEURON), np.int8)
        self.cam_neuron = np.zeros((n, CAM_ENTRIES_PER_NEURON), np.int16)
        self.cam_type = np.zeros((n, CAM_ENTRIES_PER_NEURON), np.int8)
        #: True where the host wrote the entry since the last clear (used only when cleared entries
        #: are configured not to listen to address 0).
        self.cam_written = np.zeros((n, CAM_ENTRIES_PER_NEURON), bool)
        self.sram = np.zeros((n, SRAM_ENTRIES_PER_NEURON, len(SRAM_FIELDS)), np.int8)
        self.use_tau2 = np.zeros(n, bool)
        #: Monitored neuron id (within the core) per chip and core, -1 = none.
        self.monitor = np.full((N_CHIPS, N_CORES_PER_CHIP), -1, np.int16)
        #: Incremented at every CAM/SRAM write so the routing tables know when to rebuild.
        self.connectivity_version = 0
        #: Incremented at every tau1/tau2 change so derived parameters know when to recompute.
        self.tau_version = 0
        for chip in range(N_CHIPS):
            self.default_sram(chip)

    # --- CAM ---------------------------------------------------------------------------------------
    def write_cam(self, chip: int, neuron: int, cam_index: int, pre_core: int, pre_neuron: int,
                  synapse_type: int) -> None:
        """Make CAM entry ``cam_index`` of chip-local ``neuron`` listen to (pre_core, pre_neuron)."""
        chip = check_chip(chip)
        neuron = check_chip_neuron(neuron)
        cam_index = _check_range("CAM index", cam_index, 0, CAM_ENTRIES_PER_NEURON - 1)
        pre_core = _check_range("pre core", pre_core, 0, N_CORES_PER_CHIP - 1)
        pre_neuron = _check_range("pre neuron id", pre_neuron, 0, N_NEURONS_PER_CORE - 1)
        synapse_type = _check_range("synapse type", int(synapse_type) if isinstance(synapse_type, SynapseType)
                                    else synapse_type, 0, 3)
        gid = chip * N_NEURONS_PER_CHIP + neuron
        self.cam_core[gid, cam_index] = pre_core
        self.cam_neuron[gid, cam_index] = pre_neuron
        self.cam_type[gid, cam_index] = synapse_type
        self.cam_written[gid, cam_index] = True
        self.connectivity_version += 1

    def clear_cam(self, chip: int) -> None:
        """CLEAR_CAM: type 0 and address 0 in all 64 entries of all 1024 neurons of ``chip``."""
        sl = self._chip_slice(check_chip(chip))
        self.cam_core[sl] = 0
        self.cam_neuron[sl] = 0
        self.cam_type[sl] = 0
        self.cam_written[sl] = False
        self.connectivity_version += 1

    # --- SRAM --------------------------------------------------------------------------------------
    def write_sram(self, chip: int, neuron: int, cell: int, virtual_core: int, sx: int, dx: int, sy: int,
                   dy: int, core_mask: int) -> None:
        """Write one SRAM (fan-out) entry of chip-local ``neuron``."""
        chip = check_chip(chip)
        neuron = check_chip_neuron(neuron)
        values = (
            _check_range("virtual core", virtual_core, 0, N_CORES_PER_CHIP - 1),
            _check_range("sx", sx, 0, 1),
            _check_range("dx", dx, 0, 3),
            _check_range("sy", sy, 0, 1),
            _check_range("dy", dy, 0, 3),
            _check_range("core mask", core_mask, 0, 15),
        )
        cell = _check_range("SRAM cell", cell, 0, SRAM_ENTRIES_PER_NEURON - 1)
        self.sram[chip * N_NEURONS_PER_CHIP + neuron, cell] = values
        self.connectivity_version += 1

    def clear_sram(self, chip: int) -> None:
        """All four cells of every neuron of ``chip`` set to 0: no route at all, not even to the host."""
        self.sram[self._chip_slice(check_chip(chip))] = 0
        self.connectivity_version += 1

    def default_sram(self, chip: int) -> None:
        """libcaer's power-up state: cell 0 routes every neuron to the host, cells 1-3 empty."""
        chip = check_chip(chip)
        sl = self._chip_slice(chip)
        self.sram[sl] = 0
        sx, dx, sy, dy = DEFAULT_HOST_ROUTE[chip]
        own_core = (np.arange(N_NEURONS_PER_CHIP) // N_NEURONS_PER_CORE).astype(np.int8)
        self.sram[sl, 0, 0] = own_core
        self.sram[sl, 0, 1:5] = (sx, dx, sy, dy)
        self.sram[sl, 0, 5] = chip + 1
        self.connectivity_version += 1

    # --- tau2 and monitor --------------------------------------------------------------------------
    def set_tau2(self, chip: int, neuron: int, use_tau2: bool) -> None:
        """Switch one neuron (chip-local id) to IF_TAU2_N (True) or back to IF_TAU1_N."""
        chip = check_chip(chip)
        neuron = check_chip_neuron(neuron)
        self.use_tau2[chip * N_NEURONS_PER_CHIP + neuron] = bool(use_tau2)
        self.tau_version += 1

    def set_core_tau(self, chip: int, core: int, use_tau2: bool) -> None:
        """Switch all 256 neurons of a core to tau2 (True) or tau1."""
        chip, core = check_chip(chip), check_core(core)
        start = chip * N_NEURONS_PER_CHIP + core * N_NEURONS_PER_CORE
        self.use_tau2[start : start + N_NEURONS_PER_CORE] = bool(use_tau2)
        self.tau_version += 1

    def select_monitor(self, chip: int, core: int, neuron: int) -> None:
        """Route neuron ``neuron`` (id within ``core``) to that core's analog monitor."""
        chip, core, neuron = check_chip(chip), check_core(core), check_neuron(neuron)
        self.monitor[chip, core] = neuron

    def monitored_gids(self) -> np.ndarray:
        """Board-wide id of the monitored neuron for each of the 16 (chip, core) slots, -1 if none."""
        chips, cores = np.meshgrid(np.arange(N_CHIPS), np.arange(N_CORES_PER_CHIP), indexing="ij")
        gids = chips * N_NEURONS_PER_CHIP + cores * N_NEURONS_PER_CORE + self.monitor
        return np.where(self.monitor >= 0, gids, -1).astype(np.int32).ravel()

    @staticmethod
    def _chip_slice(chip: int) -> slice:
        return slice(chip * N_NEURONS_PER_CHIP, (chip + 1) * N_NEURONS_PER_CHIP)
