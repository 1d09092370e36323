"""The connectivity half of an emulated board: CAM/SRAM writes onto :class:`ChipTables` and the
routing tables built from them.

:class:`~emulator.simulator.BoardSimulator` and :class:`~emulator.batched.BatchedSimulator` both
take it, so one board and a batch of boards (which share one set of tables) write and route the
same way.  A class using it sets ``tables`` and ``config`` and calls :meth:`_init_connectivity`.
"""

from __future__ import annotations

from .chip_state import ChipTables
from .config import EmulatorConfig
from .routing import RoutingTables, build_routing


class Connectivity:
    """CAM and SRAM writes, tau selection and the cached routing tables of one set of chip tables."""

    tables: ChipTables
    config: EmulatorConfig

    def _init_connectivity(self) -> None:
        self._routing: RoutingTables | None = None
        self._routing_version = -1

    def write_cam(self, chip: int, neuron: int, cam_index: int, pre_core: int, pre_neuron: int,
                  synapse_type: int) -> None:
        """CAM entry ``cam_index`` of ``neuron`` (chip-local id 0..1023) listens to (pre_core, pre_neuron)."""
        self.tables.write_cam(chip, neuron, cam_index, pre_core, pre_neuron, synapse_type)

    def write_sram(self, chip: int, neuron: int, cell: int, virtual_core: int, sx: int, dx: int, sy: int,
                   dy: int, core_mask: int) -> None:
        """SRAM (fan-out) entry ``cell`` of ``neuron`` (chip-local id); see :mod:`emulator.routing`."""
        self.tables.write_sram(chip, neuron, cell, virtual_core, sx, dx, sy, dy, core_mask)

    def clear_cam(self, chip: int) -> None:
        """Every CAM entry of ``chip`` to type 0 (GABA_B), address 0 - which still listens to (0, 0)."""
        self.tables.clear_cam(chip)

    def clear_sram(self, chip: int) -> None:
        """Every SRAM cell of ``chip`` to 0: no routes at all, *not even* cell 0's host route."""
        self.tables.clear_sram(chip)

    def default_sram(self, chip: int) -> None:
        """Restore the power-up SRAM of ``chip``: cell 0 routes each neuron to the host."""
        self.tables.default_sram(chip)

    def set_tau2(self, chip: int, neuron: int, use_tau2: bool) -> None:
        """Leak through IF_TAU2_N (True) or IF_TAU1_N for one neuron (chip-local id)."""
        self.tables.set_tau2(chip, neuron, use_tau2)

    def set_core_tau(self, chip: int, core: int, use_tau2: bool) -> None:
        """Leak through IF_TAU2_N (True) or IF_TAU1_N for all neurons of a core."""
        self.tables.set_core_tau(chip, core, use_tau2)

    def routing(self) -> RoutingTables:
        """CSR routing tables for the current CAM and SRAM (rebuilt only after a change)."""
        if self._routing is None or self._routing_version != self.tables.connectivity_version:
            self._routing = build_routing(self.tables, self.config.cam_saturation_count,
                                          self.config.cam_saturation_sharpness,
                                          self.config.cleared_cam_listens_to_address_zero)
            self._routing_version = self.tables.connectivity_version
            self._routing_rebuilt()
        return self._routing

    def _routing_rebuilt(self) -> None:
        """Hook: drop whatever was derived from the previous routing tables."""
