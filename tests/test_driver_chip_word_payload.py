"""0xC6 chip-word payloads are built without a Python object per word (issue 15 item 10).

A board clear sends ~10^5 chip words; one object per word kept the garbage collector running full
passes that stalled every thread, the GUI's included.  The bytes on the wire are checked against
libcaer's own transfers in ``test_driver_libcaer_vectors.py``; here, against ``struct`` and for the
collector.
"""

from __future__ import annotations

import gc
import struct

import numpy as np
import pytest

from drivers.dynapse1 import chip_words as cw
from drivers.dynapse1 import fpga_registers as fr


def test_payload_is_module_param_and_big_endian_word_per_entry_in_batches_of_85():
    words = [0, 1, 0xFFFFFFFF, 0x12345678] + list(np.random.default_rng(0).integers(0, 2**32, 200))
    transfers = fr.chip_word_transfers(words)
    expected = b"".join(struct.pack(">BBI", 5, 2, int(w)) for w in words)
    assert b"".join(t.data for t in transfers) == expected
    assert [t.value for t in transfers] == [85, 85, 34] and all(len(t.data) == 6 * t.value for t in transfers)
    assert all(t.request == 0xC6 and t.index == 0 and t.is_chip_words for t in transfers)
    assert fr.chip_word_transfers(np.asarray(words, np.uint32)) == transfers  # a numpy array sends the same
    assert fr.chip_word_transfers(iter(words)) == transfers and fr.chip_word_transfers([]) == []


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_a_word_that_does_not_fit_32_bits_is_refused(bad):
    with pytest.raises((ValueError, OverflowError)):
        fr.chip_word_transfers([1, bad])


def test_a_whole_chip_clear_runs_no_garbage_collection_pass():
    words = cw.clear_cam_words()  # 65 536 words, one chip's CAM
    collections: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.collect()
    threshold = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # Python's default, whatever the suite set
    gc.callbacks.append(seen)
    try:
        transfers = fr.chip_word_transfers(words)
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*threshold)
    assert len(transfers) == -(-len(words) // 85)
    # the 772 transfers themselves may start one pass; a RegisterWrite per word started ~190
    assert len(collections) <= 2, collections


@pytest.mark.parametrize("neurons", [range(1024), range(2), [5, 700, 1023], []])
def test_clear_words_are_the_per_entry_encoders_words_computed_at_once(neurons):
    """A chip's clear computes its 65,536 CAM words in one pass (one Python call per word held the
    GIL ~0.1 s at a calibration's start); every word is what the per-entry encoder gives."""
    assert cw.clear_cam_words(neurons) == [cw.encode_cam_word(n, i, 0, 0, cw.SynapseType.GABA_B)
                                           for n in neurons for i in range(cw.CAM_ENTRIES_PER_NEURON)]
    assert cw.clear_sram_words(neurons) == [cw.encode_sram_word(n, c, 0, cw.Route(), 0)
                                            for n in neurons for c in range(cw.SRAM_ENTRIES_PER_NEURON)]


@pytest.mark.parametrize("bad", [-1, 1024])
def test_a_clear_of_a_neuron_that_is_not_on_the_chip_is_refused(bad):
    with pytest.raises(ValueError, match="chip-global"):
        cw.clear_cam_words([3, bad])
    with pytest.raises(ValueError, match="chip-global"):
        cw.clear_sram_words([bad])
