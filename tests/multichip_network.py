"""A synthetic network larger than one chip, for the multi-chip mapping tests (no training).

2 000 units in 8 core groups of 250 (too big for core 0: three chips).  Each group is a block of
random recurrent excitation and inhibition; the groups form a chain in a shuffled order (group
``chain[i]`` hears 16 "bridge" units of group ``chain[i - 1]``), so a good partition cuts the chain
in as few places as the chips require, and the inputs reach every unit.
"""

from __future__ import annotations

import numpy as np

from neurolab_gui.core.conversion.constrain import ConstrainedNetwork, WeightPrecision
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig


def chain_network(n_hidden: int = 2000, n_groups: int = 8, n_inputs: int = 4, seed: int = 0,
                  scale: float = 0.05) -> tuple[ConstrainedNetwork, np.ndarray]:
    """The network and its chain order of groups."""
    rng = np.random.default_rng(seed)
    f = n_inputs
    group = np.repeat(np.arange(n_groups), -(-n_hidden // n_groups))[:n_hidden]
    chain = rng.permutation(n_groups)
    before = {int(chain[i]): int(chain[i - 1]) for i in range(1, n_groups)}
    m = np.zeros((n_hidden, f + 1 + n_hidden), np.int64)
    members = [np.flatnonzero(group == g) for g in range(n_groups)]
    for u in range(n_hidden):
        g = int(group[u])
        m[u, u % f] = 2  # an input
        m[u, f] = 1  # the bias channel
        own = rng.choice(members[g], 12, replace=False)
        m[u, f + 1 + own] = rng.choice([3, 2, 1, -2, -3], 12)
        if g in before:
            bridge = members[before[g]][:16]
            m[u, f + 1 + rng.choice(bridge, 2, replace=False)] = 2
    model = RateRNN(RNNConfig(f, n_hidden, 3, kind="leaky", retention=0.85, steps_per_sample=2, saturation=1.0))
    net = ConstrainedNetwork(model, m, group, np.full(n_groups, scale), WeightPrecision(16), 63)
    return net, chain
