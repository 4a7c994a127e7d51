"""Live mode: hooks on a running DeepSpeed engine (attach), the per-rank session that writes
events, and the parts that watch it (exchange, watchdog, telemetry, TensorBoard).

torch and deepspeed are imported only inside these modules, lazily.
"""
