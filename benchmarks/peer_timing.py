"""The timing rule the PyTorch peers share with the TypeScript workers (benchmarks/timing.ts)."""
import time


def time_it(fn, reps):
    """Median seconds per call (the machine is shared: the median resists bursts of other load); one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[(len(times) - 1) // 2]
