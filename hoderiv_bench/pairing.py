"""Interleaved, paired timing for benchmark scripts on noisy machines.

Contenders take turns within every round, so load that drifts over the run
hits them alike; the speed-up of a contender is the baseline's time divided
by the contender's time *in the same round*, summarised over rounds as
(median, min, max).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch.utils.benchmark as benchmark


def interleaved_samples(
    contenders: dict[str, Callable[[], object]], rounds: int, min_round_time: float
) -> dict[str, list[float]]:
    """Seconds per call of each contender in each round; the contenders take turns within every round."""
    timers = {name: benchmark.Timer("fn()", globals={"fn": fn}) for name, fn in contenders.items()}
    numbers = {}
    for name, timer in timers.items():  # calls per round so that one round takes about min_round_time
        once = timer.timeit(1).median
        numbers[name] = max(1, int(min_round_time / max(once, 1e-6)))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(numbers[name]).median)
    return samples


def paired_speedups(samples: dict[str, list[float]], baseline: str) -> dict[str, tuple[float, float, float]]:
    """Per contender: (median, min, max) over rounds of baseline time / contender time in the same round."""
    result = {}
    for name, times in samples.items():
        ratios = sorted(b / t for b, t in zip(samples[baseline], times))
        result[name] = (statistics.median(ratios), ratios[0], ratios[-1])
    return result


def interleaved_medians(
    contenders: dict[str, Callable[[], object]], rounds: int, min_round_time: float
) -> dict[str, float]:
    """Median seconds per call of each contender over interleaved rounds."""
    samples = interleaved_samples(contenders, rounds, min_round_time)
    return {name: statistics.median(values) for name, values in samples.items()}
