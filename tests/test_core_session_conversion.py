"""Views of conversion results: transfer-fit curves with the RNN target, stage table, layers."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.netlist import NeuronAddress
from neurolab_gui.core.conversion.report import ConversionReport, StageResult
from neurolab_gui.core.conversion.transfer import TransferFit
from neurolab_gui.core.session_conversion import accuracy_rows, fit_curves, layer_selections, mapping_image


class _Mapped:  # the fields of MappedNetwork these views read
    def __init__(self) -> None:
        self.unit_addresses = [NeuronAddress(0, 1, 0), NeuronAddress(0, 1, 17), NeuronAddress(0, 2, 5)]
        self.group_cores = [(0, 1), (0, 2)]
        self.n_inputs, self.n_sources = 2, 3  # two features and the bias channel, no reset channel


def test_fit_curves_target_follows_the_trained_saturation():
    fit = TransferFit(0, 1, "AMPA", gain=0.9, offset_hz=2.0, target_gain=1.0, weight_bias=(3, 40), t_ref_s=0.005,
                      points=[(200.0, 90.0), (50.0, 40.0), (100.0, 62.0)])
    curves = fit_curves(fit)
    assert curves.x.tolist() == [50.0, 100.0, 200.0] and curves.matrix()[:, 0].tolist() == [40.0, 62.0, 90.0]
    assert (curves.x_label, curves.x_unit) == ("AMPA drive m·r", "Hz")
    x = 100.0
    expected = x / (1 + x * 0.005)  # f0 = target_gain * x, then rate = f0 / (1 + f0 t_ref)
    assert np.interp(x, curves.target_x, curves.target_y) == pytest.approx(expected, rel=1e-3)
    inhibitory = fit_curves(TransferFit(0, 1, "GABA_B", 0.5, -120.0, 0.6, (3, 40), float("nan"), [(10.0, 100.0)]))
    assert inhibitory.target_y[0] == pytest.approx(120.0) and np.all(np.diff(inhibitory.target_y) <= 0)


def test_accuracy_rows_in_stage_order_with_loss_against_constrained():
    report = ConversionReport("t")
    report.add(StageResult("board_mismatch", 0.80, 50, 1200.0, 9000.0))
    report.add(StageResult("float", 0.95, 100, 1000.0))
    report.add(StageResult("constrained", 0.90, 100, 1100.0, 8000.0))
    rows = accuracy_rows(report)
    assert [r[0] for r in rows] == ["float", "constrained", "board_mismatch"]
    assert rows[2][2] == "+10.0 pp" and rows[0][4] == "-" and rows[2][5] == "50"


def test_layers_and_mapping_picture_follow_the_unit_addresses():
    mapped = _Mapped()
    layers = layer_selections(mapped)
    assert layers["RNN hidden layer (all units)"].neurons.tolist() == [256, 273, 517]
    assert layers["RNN group 1 (chip 0 core 2)"].neurons.tolist() == [517]
    # the whole network by layer name: input channels (monitor ids after the 4096 neurons), then units by core group
    network = next(iter(layers.values()))
    assert network.neurons.tolist() == [4096, 4097, 4098, 256, 273, 517]
    assert [network.row_label(r) for r in range(6)] == ["in 0", "in 1", "bias", "256", "273", "517"]
    assert network.blocks == (("inputs", 0, 3), ("group 0 (chip 0 core 1)", 3, 5), ("group 1 (chip 0 core 2)", 5, 6))
    assert [network.is_neuron(r) for r in range(6)] == [False] * 3 + [True] * 3
    image = mapping_image(mapped)
    assert image.shape == (64, 64) and (image > 0).sum() == 3
    assert image[1, 16 + 1] == 1 and image[16, 5] == 2  # neuron 17 of core 1 (top right); neuron 5 of core 2 (bottom left)
