"""The doctor's config lint: key catalogue, optimizer/scheduler params, memory estimates.

Everything here imports without torch or deepspeed; the installed DeepSpeed is introspected
lazily (dsdoctor.config.deepspeed_import) and a small checked fallback is used without it.
"""
