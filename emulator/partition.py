"""Split the board into groups of chips that can be simulated in parallel, exactly.

Inside the grid a spike has no delay, so a neuron's spike at step k changes its targets' synapses
before their step k + 1: two threads simulating different neurons would have to meet every step.
They need not when no route crosses between them.  A chip's spikes reach only the chips its
neurons' SRAM entries point to (``RoutingTables.neuron_keys``; host routes leave the grid, FPGA
inputs arrive at one chip), so the chips fall into *groups*, the connected components of the
chip-to-chip route graph.  Groups share no synapse and no neuron; any assignment of whole groups
to threads gives the same result as one thread, bit for bit.  With libcaer's default routes and
with networks kept on one chip (the common case, and the benchmark) every chip is its own group.
"""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.topology import N_CHIPS, N_NEURONS, N_NEURONS_PER_CHIP

from .routing import RoutingTables


def chip_groups(routing: RoutingTables) -> list[list[int]]:
    """Connected components of the chip route graph, each a sorted list of chips."""
    parent = list(range(N_CHIPS))

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    counts = np.diff(routing.neuron_key_ptr)
    src_chip = np.repeat(np.arange(N_NEURONS) // N_NEURONS_PER_CHIP, counts)
    dest_chip = routing.neuron_keys.astype(np.int64) // (N_NEURONS_PER_CHIP * 4)
    crosses = src_chip != dest_chip
    for code in np.unique(src_chip[crosses] * N_CHIPS + dest_chip[crosses]):
        parent[root(int(code) // N_CHIPS)] = root(int(code) % N_CHIPS)
    groups: dict[int, list[int]] = {}
    for chip in range(N_CHIPS):
        groups.setdefault(root(chip), []).append(chip)
    return sorted(groups.values())


def assign_partitions(groups: list[list[int]], n_threads: int) -> list[list[int]]:
    """Whole chip groups to at most ``n_threads`` partitions, balancing the chip count.

    Largest group first into the lightest partition; every partition's chips sorted; partitions
    ordered by their first chip.  Empty partitions are dropped.
    """
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    bins: list[list[int]] = [[] for _ in range(min(n_threads, len(groups)))]
    for group in sorted(groups, key=len, reverse=True):
        min(bins, key=len).extend(group)
    return sorted((sorted(b) for b in bins if b), key=lambda b: b[0])
