"""Detector: nonfinite (to be filled in)."""
from __future__ import annotations

from . import Detector


class NonFiniteDetector(Detector):
    kinds = ()
