"""Learning-rate schedule diagnostics.

`curve` holds an LR range test run (step, lr, loss); `readers` reads one from a CSV, dsdoctor
event files or a DeepSpeed monitor TensorBoard folder; `analysis` finds the steepest-descent,
minimum-loss and divergence LRs on a smoothed curve; `recommend` turns them into DeepSpeed
scheduler blocks; `plot` draws the curve in the terminal or to a PNG.
Pure Python: nothing here imports torch or deepspeed (tensorboard and matplotlib lazily).
"""
from .curve import Curve, LRRangeError

__all__ = ["Curve", "LRRangeError"]
