"""Detector: comm (to be filled in)."""
from __future__ import annotations

from . import Detector


class CommDetector(Detector):
    kinds = ()
