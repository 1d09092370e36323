"""RNN → spiking-network conversion for DYNAP-SE1 (train, constrain, map, run, report).

Stages, each its own module: :mod:`.tasks` (offline data sets, user ``.npz`` files),
:mod:`.models` (Elman / leaky bounded-ReLU RNNs), :mod:`.training` (BPTT with progress and
cancel), :mod:`.checkpoint` (own format and plain ``state_dict`` import), :mod:`.constrain`
(fan-in pruning, DYNAP-SE1 weight quantisation, QAT), :mod:`.mapping` (units → neurons, netlist,
bias set, time mapping), :mod:`.encoding` (inputs → FPGA spike-generator events),
:mod:`.transfer` (transfer-curve measurement and matching), :mod:`.spiking_run` (Brian2 and
Board runs, decoding), :mod:`.pipeline` (all stages and the report), :mod:`.report` (JSON and
text table).  Heavy modules are imported lazily by the caller, not here.
"""
