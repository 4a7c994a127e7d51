"""Why torch's scaled_dot_product_attention found no kernel: the reasons it printed above the exception
(sources/formats/sdpa.py, `sdpa_refusal` events), kept per input for detect/failure.py to put beside its
'No available kernel' failure (families.py sdpa_no_kernel), so the rules name the cause and its fix."""
from __future__ import annotations

from ..events import Event

MAX_KEPT = 8          # per input: the last refusals (one warning per kernel and reason)
# what each cause (sources/formats/sdpa.py REASONS) is about, for a finding's title
WHAT = {"gpu_arch": "this GPU's architecture", "dtype": "their dtype", "dropout": "a non-zero dropout",
        "dims": "not 4-D (batch, heads, sequence, head_dim)", "head_dim": "q, k and v of different head sizes",
        "stride": "a last dimension that is not contiguous", "gqa": "key/value heads that do not divide the query heads"}


class SdpaRefusals:
    def __init__(self) -> None:
        self.by_input: dict[str, list[tuple[int, Event]]] = {}

    def note(self, ev: Event, seq: int) -> None:
        kept = self.by_input.get(ev.source)
        if kept is None:
            if len(self.by_input) >= 4096:
                return
            kept = self.by_input[ev.source] = []
        kept.append((seq, ev))
        if len(kept) > MAX_KEPT:
            del kept[0]

    def before(self, source: str, seq: int) -> list[Event]:
        """The refusals printed in `source` before the exception at `seq`."""
        return [ev for s, ev in self.by_input.get(source, ()) if s < seq]


def refusal_facts(refusals: list[Event]) -> dict:
    """sdpa_cause: 'gpu_arch' when every kernel that said why was refused for this GPU's architecture (no
    fused kernel runs on it), else the first other reason (what the inputs must change for a kernel the GPU
    has); sdpa_sm, sdpa_reason (that reason's words), sdpa_causes (all of them)."""
    if not refusals:
        return {}
    causes = [ev.data.get("cause") for ev in refusals]
    arch = {ev.data.get("kernel") for ev in refusals if ev.data.get("cause") == "gpu_arch"}
    others = [ev for ev in refusals if ev.data.get("cause") != "gpu_arch" and ev.data.get("kernel") not in arch]
    main = others[0] if others else refusals[0]
    sm = next((ev.data.get("sm") for ev in refusals if ev.data.get("sm")), None)
    cause = main.data.get("cause")
    return dict(sdpa_cause=cause, sdpa_what=WHAT.get(cause, cause), sdpa_reason=main.data.get("reason"), sdpa_sm=sm,
                sdpa_causes=sorted(set(c for c in causes if c)))
