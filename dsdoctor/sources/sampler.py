"""Thinning of steady metric lines (the groups declared with recogniser.steady).

The sampler keeps per group a count of the lines seen and the next count it keeps: all of
the first STEADY_KEEP_ALL, then one in 2, one in 4, ... (the stride doubles every
STEADY_PER_DOUBLING kept lines). The scanner asks it line by line (`admit`) or, on its fast
path, for a whole block at once (`kept_in`). A run's rank logs share one budget (`RunSampling`):
the first at that density, the others thinner.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from .recogniser import STEADY_KEEP_ALL, STEADY_PER_DOUBLING
from .registry import STEADY

# The density of the rank logs of a run after the first one with steady lines (RunSampling):
# ~120 lines per group of a 128 MiB rank log instead of ~385
OTHER_RANKS_KEEP_ALL = 20
OTHER_RANKS_PER_DOUBLING = 8


class SteadySampler:
    """Thins steady metric lines (see `steady`); every other candidate line passes."""

    def __init__(self, names: list[str], keep_all: int = STEADY_KEEP_ALL,
                 per_doubling: int = STEADY_PER_DOUBLING):
        self.keep_all = keep_all
        self.per_doubling = per_doubling
        self.count: dict[str, int] = {}
        self.pending: dict[str, tuple[int, bytes, list[int]]] = {}
        self.next_kept: dict[str, int] = {}       # per group: the next count that `_keep` keeps
        # literal id -> (group name, check) or None, so a line's group costs a few list lookups
        self.table = [(g.name, g.check) if (g := STEADY.get(name)) else None for name in names]

    def _group(self, raw: bytes, ids: list[int]) -> str | None:
        """The steady group of a line with several literals, or None. A line may hold records
        of two groups: a tqdm bar redrawn with '\r' and no newline is glued to whatever is
        printed next, so in a console capture nearly every record follows a bar. Such a line
        is steady when each of its groups finds it steady, and is sampled under the pair."""
        table = self.table
        names: list[str] = []
        for i in ids:
            e = table[i]
            if e is None:
                return None
            if e[0] not in names:
                if not e[1](raw):
                    return None
                names.append(e[0])
        return names[0] if len(names) == 1 else "+".join(sorted(names))

    def _stride(self, n: int) -> int:
        """The stride at count n > keep_all: 2 for the next 2 * per_doubling lines, then 4 for
        4 * per_doubling lines, ... (per_doubling kept lines per stride)."""
        return 1 << (((n - self.keep_all - 1) // self.per_doubling + 2).bit_length() - 1)

    def _keep(self, n: int) -> bool:
        k = self.keep_all
        return n <= k or (n - k) % self._stride(n) == 0

    def _next_kept(self, n: int) -> int:
        """The smallest m > n that `_keep` keeps: the next multiple of m's stride (counted from
        keep_all; strides only grow, so no kept count lies before it; if the stride grew by
        then, go on from there)."""
        m, k = n + 1, self.keep_all
        if m <= k:
            return m
        while True:
            stride = self._stride(m)
            r = (m - k) % stride
            if r == 0:
                return m
            m += stride - r

    def admit(self, item: tuple[int, bytes, list[int]]) -> bool | None:
        """The sampler's decision for one candidate line: True (a steady line to parse now),
        False (steady, held back in `pending`), None (not steady: parse it, after `flush`).
        Runs for every candidate line, so `_group` and `_keep` are inlined for the common
        case (one literal, a steady group, past the first keep_all lines)."""
        ids = item[2]
        if len(ids) == 1:
            e = self.table[ids[0]]
            group = e[0] if e is not None and e[1](item[1]) else None
        else:
            group = self._group(item[1], ids) if ids else None
        if group is None:
            return None
        count = self.count
        n = count[group] = count.get(group, 0) + 1
        if n < self.next_kept.get(group, 0):
            self.pending[group] = item
            return False
        self.next_kept[group] = self._next_kept(n)
        if self.pending:
            self.pending.pop(group, None)
        return True

    def kept_in(self, group: str, count: int) -> list[int]:
        """The fast path's decision for a block holding `count` lines of `group`: the indexes
        (0-based, increasing) of the lines to parse. Same counting as `admit`."""
        n0 = self.count.get(group, 0)
        self.count[group] = n0 + count
        k = self.next_kept.get(group, 1)
        while k <= n0:
            k = self._next_kept(k)
        out = []
        while k <= n0 + count:
            out.append(k - n0 - 1)
            k = self._next_kept(k)
        self.next_kept[group] = k
        return out

    def flush(self) -> list[tuple[int, bytes, list[int]]]:
        """The held-back lines (the last of each group), in line order."""
        out = sorted(self.pending.values())
        self.pending.clear()
        return out

    def filter(self, hits: Iterable[tuple[int, bytes, list[int]]],
               final: bool = True) -> Iterator[tuple[int, bytes, list[int]]]:
        """Thin a stream of candidate lines; `final`: it is the end of the input."""
        for item in hits:
            verdict = self.admit(item)
            if verdict is False:
                continue
            if verdict is None and self.pending:
                yield from self.flush()
            yield item
        if final and self.pending:
            yield from self.flush()


class RunSampling:
    """The steady-line budget of one run: the inputs of one `analyze` (its rank logs), read one
    after the other. The first input that holds steady lines is sampled at full density
    (STEADY_KEEP_ALL, STEADY_PER_DOUBLING), the others at OTHER_RANKS_*: 64 rank logs then
    parse ~20x the lines of one, not 64x.

    Why that is enough: what needs the dense sample is one stream's story in time (the LR
    detector follows the first rank that prints a learning rate; warm-up, settling of the
    loss scale, loss spikes against their recent history), and that is the first rank log
    (rank 0, which DeepSpeed's log_dist prints on). The other ranks' logs serve comparisons
    across ranks (the slow-rank medians over the last 32 timer lines and over the iteration
    times, each rank's throughput series) and their own errors: anything unusual is always
    parsed, and so is the last steady line of each group before any other candidate line (the
    step of an error stays exact)."""

    def __init__(self) -> None:
        self.dense_given = False

    def sampler(self, names: list[str]) -> SteadySampler:
        if self.dense_given:
            return SteadySampler(names, OTHER_RANKS_KEEP_ALL, OTHER_RANKS_PER_DOUBLING)
        return SteadySampler(names)

    def finished(self, sampler: SteadySampler) -> None:
        """An input was read with `sampler`: had it steady lines, the dense sample is given."""
        if sampler.count:
            self.dense_given = True
