"""Detector: scaler (to be filled in)."""
from __future__ import annotations

from . import Detector


class LossScaleDetector(Detector):
    kinds = ()
