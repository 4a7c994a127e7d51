"""A user's accelerate script for the multi-node tests (it does not import dsdoctor): the
DeepSpeed engine comes from `Accelerator.prepare`, configured by `accelerate launch
--use_deepspeed --deepspeed_config_file ...` (accelerate/utils/launch.py:
prepare_deepspeed_cmd_env passes it on as ACCELERATE_DEEPSPEED_CONFIG_FILE).

    --fault stall     rank R blocks for ever before backward at step K
    --fault exit      rank R exits (code 3) before backward at step K
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--fault", default="none", choices=("none", "stall", "exit"))
    p.add_argument("--fault-step", type=int, default=5)
    p.add_argument("--fault-rank", type=int, default=1)
    p.add_argument("--step-sleep", type=float, default=0.02)
    args = p.parse_args()
    import torch
    from accelerate import Accelerator

    import torch.distributed as dist

    accelerator = Accelerator()
    # On a machine without a GPU accelerate's own state says 1 process (accelerate/state.py:
    # PartialState._prepare_backend finds no device backend), while deepspeed.comm was
    # initialised for the whole job (PartialState.__init__: dist.init_distributed): ask torch.
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4 * args.steps, 32)), batch_size=4)
    model, optimizer, data = accelerator.prepare(model, torch.optim.SGD(model.parameters(), lr=0.01), data)
    print(f"[rank {rank}] host {os.uname().nodename} node {os.environ.get('CROSS_RANK', os.environ.get('GROUP_RANK'))} "
          f"engine={type(model).__name__} attached={'dsdoctor' in sys.modules}", flush=True)
    for step, (x,) in enumerate(data):
        loss = model(x).pow(2).mean()
        if step == args.fault_step and rank == args.fault_rank:
            if args.fault == "stall":
                print(f"[rank {rank}] stalling at step {step}", flush=True)
                while True:
                    time.sleep(3600)
            if args.fault == "exit":
                print(f"[rank {rank}] exiting at step {step}", flush=True)
                os._exit(3)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        time.sleep(args.step_sleep)
    print(f"[rank {rank}] done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
