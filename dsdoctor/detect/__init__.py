"""Detectors: small, stateful, streaming code that turns events into symptoms.

A detector sees every event of the kinds it lists, in order, and returns symptoms as soon
as it can (live mode reports them at once); `finish()` returns what needs the whole run
(trends, comparisons across ranks). Memory stays bounded whatever the input size: keep
counters and small windows, never the events themselves.
"""
from __future__ import annotations

from .base import Detector, symptom_from
from .ckpt_save import CheckpointSaveDetector
from .comm import CommDetector
from .failure import FailureDetector
from .localize import NonFiniteModuleDetector
from .lr import LRScheduleDetector
from .memory import MemoryDetector
from .multinode import MultiNodeDetector
from .nccl_version import NcclVersionDetector
from .nonfinite import NonFiniteDetector
from .passthrough import PassThroughDetector
from .rank_spread import RankSpreadDetector
from .relaunch import RelaunchDetector
from .run_end import RunEndDetector
from .scaler import LossScaleDetector
from .silent_rank import SilentRankDetector
from .stall import StallDetector
from .step_windows import StepWindowDetector
from .straggler import StragglerDetector
from .throughput import ThroughputDetector

__all__ = ["Detector", "symptom_from", "DETECTORS", "default_detectors"]

# Every detector, in the order they see each event (one place: a new detector is added here).
DETECTORS: tuple[type[Detector], ...] = (
    MemoryDetector, NonFiniteDetector, LossScaleDetector, CommDetector, ThroughputDetector,
    PassThroughDetector,
    LRScheduleDetector,                      # the LR schedule
    StallDetector, StragglerDetector,        # live: stalls, stragglers
    StepWindowDetector,                      # a run folder: stragglers from every rank's step events
    SilentRankDetector,                      # a run folder: the rank a SIGKILL took
    NonFiniteModuleDetector,                 # live: module of the first NaN, --localize-nan
    FailureDetector,                         # how the run ended: the fallback for failed runs
    MultiNodeDetector,                       # roll call, Flight Recorder
    RunEndDetector,                          # a log that ends mid-run with no error
    NcclVersionDetector,                     # ranks running different NCCL releases
    RelaunchDetector,                        # a log that holds several runs: where the last one starts
    CheckpointSaveDetector,                  # checkpoint saves that take longer each time
    RankSpreadDetector,                      # the slowest rank of the run's own straggler reports
)


def default_detectors() -> list[Detector]:
    """A fresh instance of every detector (they keep per-run state)."""
    return [cls() for cls in DETECTORS]
