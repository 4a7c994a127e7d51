"""Detector: throughput (to be filled in)."""
from __future__ import annotations

from . import Detector


class ThroughputDetector(Detector):
    kinds = ()
