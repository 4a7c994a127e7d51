"""Where a rank-less failure happened: a front-end's start-up line naming its process
(sources/formats/rank_head.py, pipeline.Diagnoser._rank_from_head) and torch's GPU index in an OOM
(the device, said in the title, never taken for the rank)."""
from __future__ import annotations

from pathlib import Path

import pytest

import dsdoctor

EXCERPTS = Path(__file__).resolve().parent.parent / "fixtures" / "excerpts"


def top(name: str):
    return dsdoctor.analyze(EXCERPTS / name, validate=False).findings[0]


@pytest.mark.parametrize("name, rank", [
    ("gen_j_llamafactory_rank_head_illegal_access.log", 5),     # LLaMA-Factory: process_index
    ("gen_j_hf_example_rank_head_nccl_error.log", 3),           # transformers' run_clm.py: local_rank
    ("gen_j_swift_one_per_node_rank_head_oom.log", 2),          # ms-swift, local_world_size 1
])
def test_one_head_lends_its_rank(name, rank):
    assert top(name).ranks == [rank]


@pytest.mark.parametrize("name", [
    "gen_j_llamafactory_merged_heads_no_rank.log",      # every rank's head in one merged output
    "gen_j_swift_local_master_head_no_rank.log",         # ms-swift logs on the local master only
])
def test_heads_that_prove_no_rank_lend_none(name):
    assert top(name).ranks == []


def test_oom_gpu_index_is_named_not_taken_for_the_rank():
    f = top("gen_j_oom_gpu_index_no_rank.log")
    assert f.ranks == [] and "GPU 3" in f.title


def test_oom_with_a_real_rank_keeps_it():
    f = top("gen_j_oom_gpu_index_real_rank.log")
    assert f.ranks == [5] and "GPU" not in f.title


def test_store_lost_names_the_store_host_not_a_silent_rank():
    f = top("gen_j_store_recv_zero_bytes_agent_midrun.log")
    assert f.rule == "rendezvous-store-lost" and "node-0.cluster" in f.title
    f = top("gen_j_store_reset_unique_id_node1.log")
    assert f.rule == "rendezvous-store-lost" and f.ranks == [4, 5, 6, 7]     # the echoes, rank 0 in the summary


def test_a_block_heads_host_is_the_findings_host():
    f = top("gen_j_block_heads_rankless_failure.log")
    assert f.node == "worker-1" and "worker-1" in f.title
    f = top("gen_j_block_heads_ranked_failure.log")
    assert f.hosts == {9: "gpu-node-02"}
    f = top("gen_j_block_heads_none_single_log.log")
    assert not f.hosts and f.node is None


def test_a_headless_pydantic_report_names_its_field_and_whether_deepspeed_has_it():
    f = top("gen_j_pydantic_headless_unknown_field_fenced.log")
    assert f.key == "reduce_bucket_sz" and "not a key of DeepSpeed" in f.summary and "'?'" not in f.fixes[0].title
    f = top("gen_j_pydantic_headless_known_field_fenced.log")
    assert f.key == "zero_optimization.offload_param.pin_memory" and "not a key" not in f.summary
