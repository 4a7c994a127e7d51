"""A user's DeepSpeed script for the multi-node tests (it does not import dsdoctor).

    --fault stall     rank R blocks for ever before backward at step K
    --fault exit      rank R exits (code 3) before backward at step K
    --fault mismatch  at step K every rank broadcasts a tensor from rank 0, rank R's is twice as
                      big (gloo lets a bigger receiver through silently; NCCL would hang), then
                      rank R blocks as in 'stall' so the watchdog dumps every rank's recorder
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
    p.add_argument("--fault", default="none", choices=("none", "stall", "exit", "mismatch"))
    p.add_argument("--fault-step", type=int, default=5)
    p.add_argument("--fault-rank", type=int, default=1)
    p.add_argument("--step-sleep", type=float, default=0.02)
    p.add_argument("--local_rank", type=int, default=0)       # the deepspeed launcher passes it
    # under mpirun deepspeed finds its rank through mpi4py and takes this port for MASTER_PORT
    # (deepspeed/comm/comm.py: init_distributed -> mpi_discovery); the launcher's --master_port is not used
    p.add_argument("--dist-port", type=int, default=29500)
    # `srun python train.py`: the script maps Slurm's task variables to torch's, as users do
    p.add_argument("--env-from-slurm", action="store_true")
    args = p.parse_args()
    if args.env_from_slurm:
        os.environ.update(RANK=os.environ["SLURM_PROCID"], WORLD_SIZE=os.environ["SLURM_NTASKS"],
                          LOCAL_RANK=os.environ["SLURM_LOCALID"], MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(args.dist_port))
    import deepspeed
    import torch
    import torch.distributed as dist

    deepspeed.init_distributed(dist_backend="gloo", distributed_port=args.dist_port)
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    config = {"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1,
              "train_batch_size": 4 * world, "zero_optimization": {"stage": 0}}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
                                      config=config)
    print(f"[rank {rank}] host {os.uname().nodename} node {os.environ.get('CROSS_RANK', os.environ.get('GROUP_RANK', os.environ.get('SLURM_NODEID')))} "
          f"attached={'dsdoctor' in sys.modules}", flush=True)
    for step in range(args.steps):
        x = torch.randn(4, 32)
        loss = engine(x).pow(2).mean()
        if step == args.fault_step and rank == args.fault_rank or (args.fault == "mismatch" and step == args.fault_step):
            if args.fault == "mismatch":
                t = torch.zeros(16 if rank == args.fault_rank else 8)
                dist.broadcast(t, src=0)
            if rank == args.fault_rank and args.fault in ("stall", "mismatch"):
                print(f"[rank {rank}] stalling at step {step}", flush=True)
                while True:
                    time.sleep(3600)
            if rank == args.fault_rank and args.fault == "exit":
                print(f"[rank {rank}] exiting at step {step}", flush=True)
                sys.stdout.flush()
                os._exit(3)
        engine.backward(loss)
        engine.step()
        time.sleep(args.step_sleep)
    print(f"[rank {rank}] done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
