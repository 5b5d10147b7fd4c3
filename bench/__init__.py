"""Benchmark harness (not tests): how fast the collector polls, costs and writes a simulated fleet.

    python -m bench.poll --miners 10000 --cycles 5          # the collector vs plain pyasic vs a bare client
    python -m bench.scale --sizes 1000,5000,10000,20000     # CPU per 1,000 miners at several fleet sizes
    python -m bench.antminer --miners 1000                  # the pyasic path (Antminers) vs the 10 s interval

Every run starts the simulated fleet (`hashfleet simulate`) and, for bench.poll, a real InfluxDB
1.6.7 with the v2-write shim from tests/servers, each in its own process, so the numbers measured
here (CPU, peak RSS) are the collector's alone. docs/benchmarks.md explains every number and holds
the results.
"""
