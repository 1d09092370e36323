"""Frozen device mismatch of one emulated board, reproducible from its serial number.

Silicon mismatch is a fixed multiplicative factor per circuit: the CV stays about constant when a
bias changes and a neuron keeps its rank (reference §4).  So every factor is drawn once, as a
log-normal variable with mean 1 and the configured coefficient of variation, and multiplies the
corresponding current (or, for the refractory period, the time itself).

Seeding: the generator is seeded from ``sha256(serial + seed)``, never from Python's ``hash()``
(salted per process), so the same serial and seed give the same board on every machine and run.
Each family of factors gets its own child stream (``SeedSequence.spawn``-style keys), so switching
one CV off does not reshuffle the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.bias_table import CORE_BIASES
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS

from .config import MismatchConfig

BIAS_NAMES: tuple[str, ...] = tuple(CORE_BIASES)
BIAS_INDEX: dict[str, int] = {name: i for i, name in enumerate(BIAS_NAMES)}

#: Stream names, one per factor family; the order never matters because each is keyed by name.
_STREAMS = (
    "biasgen", "tau_mem", "refractory", "gain", "threshold", "dc", "ahp", "syn_tau", "syn_weight",
    "poisson", "noise",
)


def stable_seed(serial: str, seed: int, stream: str) -> np.random.SeedSequence:
    """A seed sequence that depends only on (serial, seed, stream), stable across processes."""
    digest = hashlib.sha256(f"{serial}\x00{int(seed)}\x00{stream}".encode()).digest()
    return np.random.SeedSequence([int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)])


def rng_for(serial: str, seed: int, stream: str) -> np.random.Generator:
    """Random generator for one named stream of one board."""
    return np.random.Generator(np.random.PCG64(stable_seed(serial, seed, stream)))


def lognormal_factors(rng: np.random.Generator, cv: float, shape: tuple[int, ...]) -> np.ndarray:
    """Log-normal factors with mean 1 and coefficient of variation ``cv`` (ones when cv = 0)."""
    if cv <= 0:
        return np.ones(shape)
    sigma2 = np.log1p(cv * cv)
    return np.exp(rng.normal(-0.5 * sigma2, np.sqrt(sigma2), size=shape))


@dataclass(frozen=True)
class MismatchFactors:
    """All frozen factors of one board.  Arrays are indexed by board-wide neuron id (0..4095).

    Attributes
    ----------
    biasgen : (4, 4, 25) per chip, core and bias (order of ``bias_table.CORE_BIASES``)
    tau_mem : (4096,) multiplies the membrane leak current (tau1 and tau2 alike)
    refractory : (4096,) multiplies the refractory period
    gain, threshold, dc, ahp : (4096,) multiply IF_THR_N, the spike threshold current, IF_DC_P and
        the adaptation leak current IF_AHTAU_N
    syn_tau, syn_weight : (4, 4096) per synapse type (SynapseType order) and neuron
    """

    biasgen: np.ndarray
    tau_mem: np.ndarray
    refractory: np.ndarray
    gain: np.ndarray
    threshold: np.ndarray
    dc: np.ndarray
    ahp: np.ndarray
    syn_tau: np.ndarray
    syn_weight: np.ndarray

    @classmethod
    def draw(cls, serial: str, seed: int, config: MismatchConfig) -> MismatchFactors:
        """Draw every factor for board ``serial``; all ones when mismatch is disabled."""
        n_bias = len(BIAS_NAMES)
        if not config.enabled:
            ones = np.ones(N_NEURONS)
            return cls(
                biasgen=np.ones((N_CHIPS, N_CORES_PER_CHIP, n_bias)),
                tau_mem=ones, refractory=ones.copy(), gain=ones.copy(), threshold=ones.copy(),
                dc=ones.copy(), ahp=ones.copy(), syn_tau=np.ones((4, N_NEURONS)), syn_weight=np.ones((4, N_NEURONS)),
            )

        def factors(stream: str, cv: float, shape: tuple[int, ...]) -> np.ndarray:
            return lognormal_factors(rng_for(serial, seed, stream), cv, shape)

        return cls(
            biasgen=factors("biasgen", config.biasgen_cv, (N_CHIPS, N_CORES_PER_CHIP, n_bias)),
            tau_mem=factors("tau_mem", config.tau_mem_cv, (N_NEURONS,)),
            refractory=factors("refractory", config.refractory_cv, (N_NEURONS,)),
            gain=factors("gain", config.gain_cv, (N_NEURONS,)),
            threshold=factors("threshold", config.threshold_cv, (N_NEURONS,)),
            dc=factors("dc", config.dc_cv, (N_NEURONS,)),
            ahp=factors("ahp", config.ahp_cv, (N_NEURONS,)),
            syn_tau=factors("syn_tau", config.syn_tau_cv, (4, N_NEURONS)),
            syn_weight=factors("syn_weight", config.syn_weight_cv, (4, N_NEURONS)),
        )
