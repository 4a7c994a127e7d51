"""Shared test set-up: DeepSpeed on the CPU (gloo), no GPU assumed."""
from __future__ import annotations

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "1")     # 2-core machines: ranks must not oversubscribe
