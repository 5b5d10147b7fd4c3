"""Power truth: what miners report against what meters read.

Where an outlet or rack meter reads a miner (MQTT ingest, `LiveInputs.metered_w`), the ratio metered /
reported is observed every cycle it mines, past its first health_signals.RAMP_S after a start (the
draw climbs with the hashrate then; a meter's reading a few seconds older reads less). Per model,
the ratios of recent cycles (any of its metered miners) give a learned correction factor: the median
over its miners of each one's median ratio (a miner that is off is one vote), once there are
MIN_SAMPLES ratios from at least MIN_MINERS miners, used only within [MIN_FACTOR, MAX_FACTOR] (past
that it is not a calibration but a fault, and each miner says so itself). The cost stage multiplies the reported watts of a miner no
meter reads by its model's factor (`correction`), so the cost figures use the draw the meters say
that model really has. A miner far from its model's factor is a power problem of its own
(health_signals.power) and its ratio is not learned from.

A facility meter (the whole site's draw: `facility` keys of an MQTT meter subscription) gives the
measured PUE = facility watts / the miners' watts, smoothed, within [1, MAX_PUE]; the cost stage uses
it in place of the configured PUE (`measured_pue`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from statistics import median

from models import MinerSample

MIN_SAMPLES = 30  # ratios before a model's factor is used (a few minutes of one meter at 10 s cycles)
MIN_MINERS = 1
MAX_SAMPLES = 512  # per model: the latest, so the factor follows a firmware update within an hour or so
MIN_FACTOR, MAX_FACTOR = 0.8, 1.25
ACCEPT_SHARE = 0.15  # a ratio this far from the model's factor is that miner's fault, not the model's
FIRST_RANGE = (1 / 1.5, 1.5)  # before a factor exists: what could still be a calibration
MAX_PUE = 3.0
PUE_SMOOTHING = 0.2  # weight of each new measurement (an EWMA over ~5 cycles)
MAX_MODELS = 1024  # model strings come from miners: bounded


@dataclass(frozen=True, slots=True)
class Correction:
    factor: float
    samples: int
    miners: int


class PowerTruth:
    def __init__(self) -> None:
        self._ratios: dict[str, deque[tuple[str, float]]] = {}
        self._factors: dict[str, Correction] = {}  # usable factors, recomputed at each cycle's end
        self._learning: dict[str, Correction] = {}  # every model's median so far (shown), usable or not
        self._pue: float | None = None

    def factor(self, model: str | None) -> float | None:
        """The learned metered / reported factor of `model`, when usable."""
        found = self._factors.get(model) if model else None
        return found.factor if found is not None else None

    def correction(self, sample: MinerSample) -> float | None:
        """For the cost stage: the factor to apply to this miner's reported watts (no meter reads it)."""
        return self.factor(sample.model)

    def corrections(self) -> dict[str, Correction]:
        """Every model's factor so far (written to InfluxDB), usable or still learning."""
        return dict(self._learning)

    def observe(self, miner: str, model: str | None, reported_w: float, metered_w: float) -> bool:
        """One cycle's pair for one miner; False when not learned from (no model, or it is off)."""
        if not model or reported_w <= 0 or metered_w <= 0:
            return False
        ratio = metered_w / reported_w
        current = self._factors.get(model)
        if current is not None:
            if abs(ratio / current.factor - 1) > ACCEPT_SHARE:
                return False
        elif not FIRST_RANGE[0] <= ratio <= FIRST_RANGE[1]:
            return False
        ring = self._ratios.get(model)
        if ring is None:
            if len(self._ratios) >= MAX_MODELS:
                return False
            ring = self._ratios[model] = deque(maxlen=MAX_SAMPLES)
        ring.append((miner, ratio))
        return True

    def finish(self) -> None:
        """Recompute each model's factor from its ratios (once a cycle)."""
        for model, ring in self._ratios.items():
            by_miner: dict[str, list[float]] = {}
            for miner, ratio in ring:
                by_miner.setdefault(miner, []).append(ratio)
            # The median of each miner's median: one miner reading every cycle is one vote, not most of them.
            value = median(median(ratios) for ratios in by_miner.values())
            found = Correction(value, len(ring), len(by_miner))
            self._learning[model] = found
            if found.samples >= MIN_SAMPLES and found.miners >= MIN_MINERS and MIN_FACTOR <= value <= MAX_FACTOR:
                self._factors[model] = found
            else:
                self._factors.pop(model, None)

    # -- the facility meter --------------------------------------------------------------------

    def measured_pue(self) -> float | None:
        return self._pue

    def observe_facility(self, facility_w: float | None, miners_w: float | None) -> float | None:
        """One cycle's facility reading against the miners' draw (None: not known for every miner); the
        smoothed PUE (None until one)."""
        if facility_w is None or miners_w is None or miners_w <= 0:
            return self._pue
        pue = facility_w / miners_w
        if not 1.0 <= pue <= MAX_PUE:  # a meter that does not cover these miners, or a wrong mapping
            return self._pue
        self._pue = pue if self._pue is None else self._pue + PUE_SMOOTHING * (pue - self._pue)
        return self._pue
