"""What the network pays: the block subsidy at a height, the BTC a hashrate earns a day, and the network's
own hashrate (from its difficulty). Pure formulas (docs/cost.md), used by the cost engine and by whoever
weighs a figure against the network (a pool's credit, a worker's hashrate: collector/sources/pools/base.py).
"""

from __future__ import annotations

from models.economics import NetworkState

SECONDS_PER_DAY = 86_400
TWO_POW_32 = 2**32
BLOCK_S = 600  # the chain's target spacing
HALVING_INTERVAL_BLOCKS = 210_000
INITIAL_SUBSIDY_SAT = 50 * 100_000_000


def subsidy_btc(height: int) -> float:
    """Block subsidy at `height`: 50 BTC halved every 210,000 blocks (3.125 BTC from 840,000)."""
    if height < 0:
        raise ValueError(f"height must be >= 0, got {height}")
    halvings = height // HALVING_INTERVAL_BLOCKS
    # Consensus halves satoshis with a right shift, so the subsidy reaches exactly 0.
    return (INITIAL_SUBSIDY_SAT >> halvings) / 1e8 if halvings < 64 else 0.0


def network_subsidy_btc(network: NetworkState) -> float:
    if network.subsidy_btc is not None:
        return network.subsidy_btc
    assert network.height is not None  # NetworkState requires one of the two
    return subsidy_btc(network.height)


def btc_per_day(hashrate_ths: float, difficulty: float, subsidy_btc: float, fees_btc: float) -> float:
    """Expected BTC a day: H/s x 86,400 x (subsidy + mean fees per block) / (difficulty x 2^32)."""
    return hashrate_ths * 1e12 * SECONDS_PER_DAY * (subsidy_btc + fees_btc) / (difficulty * TWO_POW_32)


def network_hashrate_ths(network: NetworkState) -> float:
    """The whole network's hashrate its difficulty implies: difficulty x 2^32 hashes a block, a block in 600 s."""
    return network.difficulty * TWO_POW_32 / BLOCK_S / 1e12
