"""An LR range test run: one (step, lr, loss) point per optimizer step."""
from __future__ import annotations

from dataclasses import dataclass, field


class LRRangeError(ValueError):
    """The input cannot give an LR recommendation. str() is one line, said to the user as is."""


@dataclass
class Curve:
    steps: list[int]
    lrs: list[float]
    losses: list[float]          # may hold nan/inf (a diverged run)
    source: str = ""
    notes: list[str] = field(default_factory=list)   # what the reader had to assume or drop

    def __len__(self) -> int:
        return len(self.steps)

    @classmethod
    def from_points(cls, points: dict[int, tuple[float, float]], source: str,
                    notes: list[str] | None = None) -> "Curve":
        """Points keyed by step, sorted by step."""
        steps = sorted(points)
        return cls(steps=steps, lrs=[points[s][0] for s in steps], losses=[points[s][1] for s in steps],
                   source=source, notes=list(notes or []))
