"""The netlist compiler's routes across chips: mesh hops, SRAM cells, CAM tags, and what it refuses."""

from __future__ import annotations

import pytest

from drivers.dynapse1 import chip_words as cw
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.netlist_compiler import NetlistError, compile_netlist
from drivers.dynapse1.topology import SynapseType

AMPA = SynapseType.AMPA


def test_each_destination_chip_gets_one_cell_with_the_mesh_route_and_the_union_of_its_cores():
    src = NeuronAddress(0, 1, 7)
    net = Netlist()
    for post in (NeuronAddress(0, 2, 1), NeuronAddress(3, 0, 40), NeuronAddress(3, 2, 41), NeuronAddress(1, 3, 5)):
        net.add(src, post, AMPA)
    compiled = compile_netlist(net)
    routes = {r.destination_chip: r for r in compiled.routes if r.source == src}
    assert sorted(routes) == [0, 1, 3]
    assert routes[0].route == cw.Route() and routes[0].core_mask == 0b0100
    assert routes[3].route == cw.Route(sx=0, dx=1, sy=1, dy=1) and routes[3].core_mask == 0b0101  # diagonal: 2 hops
    assert routes[1].route == cw.Route(sx=0, dx=1, sy=0, dy=0) and routes[1].core_mask == 0b1000
    assert [r.cell for r in routes.values()] == [1, 2, 3]  # cell 0 is the host route
    assert len(compiled.inter_chip_routes) == 2  # to chips 1 and 3; the cell to chip 0 is local
    # the SRAM words say the same thing the route list says
    words = [cw.decode_sram_word(w) for w in compiled.sram_words[0] if cw.decode_sram_word(w).neuron == 256 + 7]
    assert [(w.cell, w.route, w.core_mask) for w in words[1:]] == [(r.cell, r.route, r.core_mask) for r in routes.values()]


def test_an_fpga_input_reaches_only_its_own_chip():
    net = Netlist()
    net.add(InputAddress(1, 5), NeuronAddress(0, 1, 1), AMPA)
    with pytest.raises(NetlistError, match=r"input \(chip 1, core 0, neuron 5\) cannot reach neuron \(chip 0, core 1, neuron 1\)"):
        compile_netlist(net)


def test_remote_sources_avoid_local_input_and_cleared_tags():
    post = NeuronAddress(1, 2, 3)
    net = Netlist()
    net.add(InputAddress(1, 4), post, AMPA)  # an input on chip 1 holds tag (0, 4)
    net.add(NeuronAddress(1, 1, 4), post, AMPA)  # a local unit holds (1, 4)
    net.add(NeuronAddress(0, 0, 4), post, AMPA)  # remote: (0, 4) and (1, 4) taken -> (2, 4)
    net.add(NeuronAddress(0, 2, 0), post, AMPA)  # remote (2, 0): its real tag is free
    net.add(NeuronAddress(2, 2, 0), post, AMPA)  # remote: (2, 0) taken, (0, 0) is the cleared tag -> (1, 0)
    compiled = compile_netlist(net)
    assert compiled.warnings == []
    tags = [(w.pre_core, w.pre_neuron) for w in map(cw.decode_cam_word, compiled.cam_words[1][:5])]
    assert tags == [(0, 4), (1, 4), (2, 4), (2, 0), (1, 0)]


def test_a_local_source_on_the_cleared_address_is_reported():
    net = Netlist()
    net.add(NeuronAddress(0, 0, 0), NeuronAddress(0, 1, 1), AMPA)
    assert any("cleared CAM entry" in w for w in compile_netlist(net).warnings)
