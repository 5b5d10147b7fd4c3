"""Sources turn a miner's bytes into MinerSample and nothing else.

Each source is one module: `avalon` (native CGMiner driver for Canaan Avalon),
`pyasic_source` (every other make, through pyasic). A source never raises for a
misbehaving miner: it returns a sample whose state says offline or error, with
the reason in `errors`.
"""
