"""A small learnable task for the LR tests, trained by a real DeepSpeed engine on the CPU.

A student MLP learns a fixed random teacher MLP (regression, MSE) on synthetic data with a
fixed seed. Adam on it learns at small LRs and really diverges at large ones, so an LR range
test shows the whole curve. Single process; run it in a subprocess (DeepSpeed initialises
torch.distributed with gloo):

  python tests/lr_task.py lrrt OUT_DIR [--min-lr 1e-4 --step-size 10 --step-rate 2 --steps 300]
      LRRangeTest run. Writes OUT_DIR/lrrt.csv (step,lr,loss), OUT_DIR/events-rank0.jsonl
      (dsdoctor lr/loss events) and OUT_DIR/tb (DeepSpeed's TensorBoard monitor, with the loss
      added by the script under Train/Samples/train_loss since DeepSpeed 0.19 writes no loss).
  python tests/lr_task.py compare SPEC.json OUT.json
      SPEC: {"steps": N, "runs": {name: scheduler block (+ "optimizer_lr") or {"fixed_lr": x}}}.
      Trains each run from the same seed for N steps (a run may set its own "steps") and writes
      {name: final loss on the whole data set}. A run with "record": DIR writes its lr/loss events
      to DIR/events-rank0.jsonl, as `dsdoctor run` would.
"""
from __future__ import annotations

import json
import math
import os
import sys

os.environ.setdefault("DS_ACCELERATOR", "cpu")
for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
    os.environ.setdefault(k, v)
if "MASTER_PORT" not in os.environ:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["MASTER_PORT"] = str(s.getsockname()[1])

import torch  # noqa: E402

SEED = 1234
N_DATA, D_IN, HIDDEN, BATCH = 2048, 16, 64, 64
OPTIMIZER = lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)  # noqa: E731


def make_data():
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(N_DATA, D_IN, generator=g)
    w1 = torch.randn(D_IN, 32, generator=g) / math.sqrt(D_IN)
    w2 = torch.randn(32, 1, generator=g) / math.sqrt(32)
    y = torch.tanh(x @ w1) @ w2 * 3.0
    y = y + 0.05 * torch.randn(y.shape, generator=g)
    return x, y


def make_model():
    torch.manual_seed(SEED)
    return torch.nn.Sequential(torch.nn.Linear(D_IN, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, 1))


def make_engine(scheduler: dict | None, lr: float, extra: dict | None = None):
    import deepspeed
    model = make_model()
    opt = OPTIMIZER(model.parameters(), lr=lr)
    cfg = {"train_micro_batch_size_per_gpu": BATCH, "gradient_accumulation_steps": 1,
           "gradient_clipping": 0.0, "steps_per_print": 10 ** 9}
    if scheduler:
        cfg["scheduler"] = scheduler
    cfg.update(extra or {})
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=cfg)
    return engine


def batches(x, y, steps: int):
    g = torch.Generator().manual_seed(SEED + 1)
    for _ in range(steps):
        idx = torch.randint(0, N_DATA, (BATCH,), generator=g)
        yield x[idx], y[idx]


def train(engine, x, y, steps: int, on_step=None) -> float:
    for i, (xb, yb) in enumerate(batches(x, y, steps)):
        lr = engine.get_lr()[0]            # the LR this step trains with
        loss = torch.nn.functional.mse_loss(engine(xb), yb)
        engine.backward(loss)
        engine.step()
        if on_step:
            on_step(i + 1, lr, float(loss.detach()), engine)
    with torch.no_grad():
        final = float(torch.nn.functional.mse_loss(engine.module(x), y))
    return final if math.isfinite(final) else float("inf")


def run_lrrt(out: str, min_lr: float, step_size: int, step_rate: float, steps: int) -> None:
    from dsdoctor.events import Event, EventWriter
    os.makedirs(out, exist_ok=True)
    x, y = make_data()
    sched = {"type": "LRRangeTest", "params": {"lr_range_test_min_lr": min_lr,
                                               "lr_range_test_step_size": step_size,
                                               "lr_range_test_step_rate": step_rate,
                                               "lr_range_test_staircase": False}}
    tb = {"tensorboard": {"enabled": True, "output_path": os.path.join(out, "tb"), "job_name": "lrrt"}}
    engine = make_engine(sched, min_lr, tb)
    writer = EventWriter(os.path.join(out, "events-rank0.jsonl"))
    rows = ["step,lr,loss"]

    def record(step, lr, loss, eng):
        rows.append(f"{step},{lr!r},{loss!r}")
        writer.write(Event("lr", rank=0, step=step, data={"value": lr}))
        writer.write(Event("loss", rank=0, step=step, data={"value": loss, "name": "loss"}))
        # DeepSpeed 0.19 writes Train/Samples/lr itself; the loss is the user's to log.
        eng.monitor.write_events([("Train/Samples/train_loss", loss, eng.global_samples)])

    train(engine, x, y, steps, record)
    writer.close()
    with open(os.path.join(out, "lrrt.csv"), "w") as fh:
        fh.write("\n".join(rows) + "\n")
    if engine.monitor.tb_monitor is not None:
        engine.monitor.tb_monitor.summary_writer.flush()


def run_compare(spec_path: str, out_path: str) -> None:
    with open(spec_path) as fh:
        spec = json.load(fh)
    from dsdoctor.events import Event, EventWriter
    x, y = make_data()
    results = {}
    for name, run in spec["runs"].items():
        run = dict(run)
        steps = run.pop("steps", spec["steps"])
        record = run.pop("record", None)       # a folder: write this run's lr/loss events there
        if "fixed_lr" in run:
            engine = make_engine(None, run["fixed_lr"])
        else:
            engine = make_engine({"type": run["type"], "params": run["params"]}, run.get("optimizer_lr", 1e-3))
        on_step = None
        if record:
            os.makedirs(record, exist_ok=True)
            writer = EventWriter(os.path.join(record, "events-rank0.jsonl"))

            def on_step(step, lr, loss, eng, writer=writer):
                writer.write(Event("lr", rank=0, step=step, data={"value": lr}))
                writer.write(Event("loss", rank=0, step=step, data={"value": loss, "name": "loss"}))
        results[name] = train(engine, x, y, steps, on_step)
    with open(out_path, "w") as fh:
        json.dump(results, fh)


def main(argv: list[str]) -> None:
    import argparse
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("lrrt")
    a.add_argument("out")
    a.add_argument("--min-lr", type=float, default=1e-4)
    a.add_argument("--step-size", type=int, default=10)
    a.add_argument("--step-rate", type=float, default=2.0)
    a.add_argument("--steps", type=int, default=300)
    c = sub.add_parser("compare")
    c.add_argument("spec")
    c.add_argument("out")
    args = p.parse_args(argv)
    import deepspeed
    deepspeed.init_distributed(dist_backend="gloo")
    if args.mode == "lrrt":
        run_lrrt(args.out, args.min_lr, args.step_size, args.step_rate, args.steps)
    else:
        run_compare(args.spec, args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
