"""Small networks several test files build the same way (one definition, so they cannot drift apart)."""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.bias_sets import apply_bias_set

#: Bias overrides that switch all four synapse types and the adaptation on (on top of samna_recommended).
SYNAPSES_ON = {
    "NPDPIE_THR_F_P": (2, 80), "PS_WEIGHT_EXC_F_N": (5, 60), "NPDPIE_THR_S_P": (2, 80), "PS_WEIGHT_EXC_S_N": (5, 60),
    "NPDPII_THR_F_P": (2, 80), "PS_WEIGHT_INH_F_N": (5, 60), "NPDPII_THR_S_P": (2, 80), "PS_WEIGHT_INH_S_N": (5, 60),
    "IF_AHTHR_N": (3, 80), "IF_AHW_P": (5, 60),
}


def wire_recurrent_chips(sim, dc=(5, 40)) -> None:
    """Random recurrent networks on every chip (16 CAM entries per neuron, all synapse types), each
    neuron's SRAM cell 1 back to its own chip's four cores, all synapses on: the same on a
    BoardSimulator or a BatchedSimulator."""
    apply_bias_set(sim, "samna_recommended", overrides={**SYNAPSES_ON, "IF_DC_P": dc})
    rng = np.random.default_rng(3)
    t = sim.tables
    t.cam_core[:, :16] = rng.integers(0, 4, size=(4096, 16))
    t.cam_neuron[:, :16] = rng.integers(0, 256, size=(4096, 16))
    t.cam_type[:, :16] = rng.integers(0, 4, size=(4096, 16))
    t.cam_written[:, :16] = True
    t.sram[:, 1] = 0
    t.sram[:, 1, 0] = (np.arange(4096) % 1024) // 256
    t.sram[:, 1, 5] = 15
    t.connectivity_version += 1


def tiny_mapped_network():
    """A 12-unit leaky RNN on a random 4-feature, 3-class task, constrained without QAT and mapped:
    (constrained network, mapped network, task)."""
    import torch

    from neurolab_gui.core.conversion.constrain import ConstraintConfig, constrain
    from neurolab_gui.core.conversion.mapping import NeuronSettings, TimeMapping, map_network
    from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
    from neurolab_gui.core.conversion.tasks import Task
    from neurolab_gui.core.conversion.training import TrainConfig

    rng = np.random.default_rng(0)
    x = rng.random((40, 6, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    task = Task("tiny", x, y, x[:20], y[:20], 3)
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(4, 12, 3, "leaky", 0.85, 4, "mean", 1.0))
    net = constrain(model, task, ConstraintConfig(max_fan_in=63, n_core_groups=2, qat=TrainConfig(epochs=0)), 0.85, 4,
                    saturation=1.0)
    mapped = map_network(net, TimeMapping(retention=0.85, steps_per_sample=4), NeuronSettings())
    return net, mapped, task
