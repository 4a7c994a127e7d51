"""Rank 0's aggregation work at 4,096 simulated ranks, against a real TCPStore on localhost.

    python benchmarks/store_scale.py [--ranks 4096] [--rounds 20]

Simulates what the live exchange and watchdog do every K steps: each rank `set`s its summary
and its heartbeat (done here from a few client connections), then rank 0 runs one aggregation
round (1 add + 1 multi_get + median/MAD over all ranks) and one watchdog round (1 add +
1 multi_get + the verdict). Prints the time per round and the store operations per rank.
Figures are measured, not asserted.
"""
from __future__ import annotations

import argparse
import datetime
import json
import random
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8, help="client connections that play the ranks")
    args = ap.parse_args()

    import torch.distributed as dist

    from dsdoctor.live.exchange import READY_KEY, Aggregator, summary_key
    from dsdoctor.live.watchdog import HB_PREFIX, HB_READY, verdict

    n = args.ranks
    t = datetime.timedelta(seconds=60)
    master = dist.TCPStore("127.0.0.1", 0, None, True, timeout=t, wait_for_workers=False)
    clients = [dist.TCPStore("127.0.0.1", master.port, None, False, timeout=t) for _ in range(args.clients)]
    rnd = random.Random(0)

    def publish(step: int) -> tuple[float, int]:
        """Every simulated rank publishes its summary and its heartbeat: 2 sets per rank."""
        t0, nbytes = time.perf_counter(), 0
        for r in range(n):
            c = clients[r % len(clients)]
            # the shape of exchange.window_summary: `at` is the global step, `step` the step phase (ms)
            s = {"at": step, "n": 10, "t": time.time(), "fwd": 40 * rnd.lognormvariate(0, 0.05),
                 "bwd": 80 * rnd.lognormvariate(0, 0.05), "step": 5.0, "data": 1.0}
            if r == 1234:
                s["fwd"] *= 1.6                     # one straggler among 4,096
            hb = {"seq": step, "step": step, "micro_step": step, "phase": "forward", "age": 0.01,
                  "pid": 1000 + r, "host": f"node{r // 8:04d}"}
            a, b = json.dumps(s, separators=(",", ":")), json.dumps(hb, separators=(",", ":"))
            nbytes += len(a) + len(b)
            c.set(summary_key(r), a)
            c.set(HB_PREFIX + str(r), b)
        return time.perf_counter() - t0, nbytes

    pub_s, nbytes = publish(0)
    master.add(READY_KEY, n)
    master.add(HB_READY, n)
    agg = Aggregator(master, n)
    hb_keys = [HB_PREFIX + str(r) for r in range(n)]
    agg_times, hb_times, found = [], [], None
    for i in range(args.rounds):
        if i % 5 == 4:
            publish(i)
        ops_before = agg.ops
        t0 = time.perf_counter()
        data = agg.round()
        agg_times.append(time.perf_counter() - t0)
        assert agg.ops - ops_before <= 2          # add(ready) until every rank is in, then multi_get only
        found = sorted(int(r) for r in (data or {}).get("outliers", {}))
        t0 = time.perf_counter()
        int(master.add(HB_READY, 0))
        beats = {r: json.loads(x) for r, x in enumerate(master.multi_get(hb_keys))}
        verdict(beats, {r: 0.5 for r in beats}, set(), 60.0)
        hb_times.append(time.perf_counter() - t0)

    ms = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    print(f"store_scale: {n} simulated ranks, TCPStore on localhost, {args.rounds} rounds")
    print(f"  exchange round on rank 0 (1 add + 1 multi_get of {n} keys + median/MAD): "
          f"median {ms(agg_times):.1f} ms, max {1000 * max(agg_times):.1f} ms; outliers named: {found}")
    print(f"  watchdog round on rank 0 (1 add + 1 multi_get of {n} heartbeats + verdict): "
          f"median {ms(hb_times):.1f} ms, max {1000 * max(hb_times):.1f} ms")
    print("  store ops per rank per K steps: 1 set (summary); per heartbeat interval: 1 set (heartbeat) + "
          "1 add (stall notices); rank 0 adds 2 ops per round in total, rank 1 one get, whatever the rank count")
    print(f"  payload: {nbytes / n:.0f} bytes per rank per round, {nbytes / 1e6:.2f} MB read by rank 0 per round "
          f"(summaries + heartbeats)")
    print(f"  publishing all {n} ranks' 2 keys from {len(clients)} connections: {pub_s * 1000:.0f} ms "
          f"({pub_s / (2 * n) * 1e6:.0f} us per set, serialised here; real ranks publish in parallel)")


if __name__ == "__main__":
    main()
