    t0 = time.time()
    paused = False
    for step in range(args.steps):
        fault.step = step
        for _ in range(args.gas):
            x = torch.randn(args.micro_batch, args.hidden, generator=gen)
            y = x @ w_true / args.hidden ** 0.5
            if fault.active("nan"):
                x[0, 0] = float("nan")
            if args.step_sleep_ms:
                time.sleep(args.step_sleep_ms / 1000)
            loss = engine(x.to(dtype), y)
            if args.pause_s > 0 and step == args.pause_step and rank == args.fault_rank and not paused:
                paused = True
                print(f"[rank {rank}] pausing {args.pause_s:g} s before backward at step {step}", flush=True)
                time.sleep(args.pause_s)
                print(f"[rank {rank}] resuming at step {step}", flush=True)
            if fault.active("stall"):
                print(f"[rank {rank}] stalling before backward at step {step}", flush=True)
                while True:
                    time.sleep(3600)
            if fault.active("gil-hang"):
                print(f"[rank {rank}] hanging with the GIL held before backward at step {step}", flush=True)
                import ctypes
                while True:
                    ctypes.PyDLL(None).sleep(3600)     # PyDLL: the GIL is not released
            if fault.active("sigkill"):
                time.sleep(1.5)         # let the step events of the steps before reach the disk
                os.kill(os.getpid(), 9)
            if fault.active("raise"):
                raise LookupError(f"demo fault: no entry for sample {step} in the index")
            engine.backward(loss)
            engine.step()
        if rank == 0 and (step % args.print_every == 0 or step == args.steps - 1):
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    if rank == 0:
        dt = (time.time() - t0) / max(args.steps, 1)
        print(f"done: {args.steps} steps, {dt * 1000:.1f} ms/step", flush=True)
    return 0
