"""Recognisers for the message formats of torch, NCCL, gloo, DeepSpeed, HF, Megatron,
launchers and the GPU driver. Each module marks its handlers with `@on(trigger, ...)`
(sources/recogniser.py): a handler runs only for lines containing one of its literal
triggers. sources/registry.py lists the modules and builds the tables; importing this
package registers nothing.
"""
