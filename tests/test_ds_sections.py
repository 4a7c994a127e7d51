"""DeepSpeed 0.19's less-travelled config sections used the wrong way (part X; detect/ds_misuse.py, rules
failure-deepspeed-misuse and failure-config-exception): NVMe offload, the monitors, the flops profiler,
data_efficiency, ZeRO++ on the CPU, autotuning. Two misuses provoked for real with the installed DeepSpeed on
the CPU (1 rank, gloo), and the family of each raise site the fixtures gen_x_* captured, with look-alikes that
must not match."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dsdoctor.detect.families import classify

sys.path.insert(0, str(Path(__file__).parent))
from test_failure import ahead, diagnose, output_of, top  # noqa: E402
import run_ahead  # noqa: E402
from test_ds_misuse import _PRELUDE  # noqa: E402

_NET = "m = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 1))\n"


# both processes listed to start one test ahead (tests/run_ahead.py); the file in the way is in a folder of its own
_BLOCKER = Path(run_ahead.scratch("monitor")) / "tb"
_BLOCKER.write_text("")
MONITOR_PATH_THROUGH_A_FILE = ahead(_PRELUDE + _NET + "deepspeed.initialize(model=m, model_parameters=m.parameters(), config={"
                                    f"**CFG, 'tensorboard': {{'enabled': True, 'output_path': '{_BLOCKER}', "
                                    "'job_name': 'j'}})\n", timeout=300)
CURRICULUM_WITHOUT_METRICS = ahead(_PRELUDE + _NET + "deepspeed.initialize(model=m, model_parameters=m.parameters(), config={"
                                   "**CFG, 'data_efficiency': {'enabled': True, 'data_sampling': {'enabled': True, "
                                   "'curriculum_learning': {'enabled': True}}}})\n", timeout=300)


def test_a_monitor_output_path_through_a_file():
    # monitor/tensorboard.py get_summary_writer os.makedirs(output_path/job_name): NotADirectoryError
    f = top(output_of(MONITOR_PATH_THROUGH_A_FILE, timeout=300))
    assert (f.rule, f.category) == ("failure-deepspeed-misuse", "config_error"), (f.rule, f.summary)
    assert "tensorboard.output_path" in f.summary and "Not a directory" in f.evidence[0].text
    assert f.fixes[0].title == "Point the path in the ds_config at a directory DeepSpeed can create"


def test_curriculum_learning_without_metrics():
    # runtime/data_pipeline/config.py get_curriculum_learning's assert, at deepspeed.initialize
    f = top(output_of(CURRICULUM_WITHOUT_METRICS, timeout=300))
    assert (f.rule, f.category) == ("failure-config-exception", "config_error"), (f.rule, f.summary)
    assert "curriculum_metrics must be specified" in f.evidence[0].text
    assert "curriculum_metrics" in f.fixes[0].advice


_DS = "/usr/lib/python3/site-packages/deepspeed/"
_OS = "<frozen os>:makedirs"


@pytest.mark.parametrize("type_,message,site,frames,family", [
    # zero/stage3.py _configure_tensor_swapping: nvme_path a file, under /proc, missing
    ("NotADirectoryError", "[Errno 20] Not a directory: '/etc/hostname/zero_stage_3'", _OS,
     [_OS, _DS + "runtime/zero/stage3.py:_configure_tensor_swapping"], "ds_config_path"),
    ("FileNotFoundError", "[Errno 2] No such file or directory: '/proc/nvme0'", _OS,
     [_OS, _DS + "runtime/zero/stage3.py:_configure_tensor_swapping"], "ds_config_path"),
    ("TypeError", "expected str, bytes or os.PathLike object, not NoneType", "<frozen posixpath>:join",
     [_DS + "runtime/zero/stage3.py:_configure_tensor_swapping"], "ds_config_path"),
    # profiling/flops_profiler/profiler.py print_model_profile open(output_file)
    ("NotADirectoryError", "[Errno 20] Not a directory: '/etc/hostname/flops.txt'",
     _DS + "profiling/flops_profiler/profiler.py:print_model_profile", [], "ds_config_path"),
    # an nn.Embedding(sparse=True) under AdamW, and under ZeRO-2 (SGD with zero_allow_untested_optimizer)
    ("RuntimeError", "Adam does not support sparse gradients, please consider SparseAdam instead",
     "/usr/lib/python3/site-packages/torch/optim/adam.py:_init_group", [], "sparse_grad_optimizer"),
    ("NotImplementedError", "Could not run 'aten::view' with arguments from the 'SparseCPU' backend. This could be "
     "because the operator doesn't exist for this backend", _DS + "runtime/zero/stage_1_and_2.py:"
     "reduce_independent_p_g_buckets_and_remove_grads", [], "sparse_grad_zero"),
    # runtime/engine.py _checkpoint_tag_validation under tag_validation FAIL
    ("AssertionError", "[rank=1] The checkpoint tag name 'step2_rank1' is not consistent across all ranks. Including "
     "rank unique information in checkpoint tag could cause issues when restoring with different world sizes.",
     _DS + "runtime/engine.py:_checkpoint_tag_validation", [], "ds_ckpt_tag"),
    # ops/op_builder/cpu/no_impl.py: ZeRO++ on the CPU accelerator
    ("ValueError", "This op had not been implemented on CPU backend.", _DS + "ops/op_builder/cpu/no_impl.py:load",
     [_DS + "runtime/comm/coalesced_collectives.py:all_to_all_quant_reduce"], "ds_op_not_on_accelerator"),
    ("ValueError", "This op had not been implemented on CPU backend.", _DS + "ops/op_builder/cpu/no_impl.py:load",
     [_DS + "runtime/zero/partition_parameters.py:__init__"], "ds_op_not_on_accelerator"),
])
def test_each_raise_site_is_its_family(type_, message, site, frames, family):
    fam = classify(type_, message, site, frames)
    assert (fam.name, fam.category) == (family, "config_error")


@pytest.mark.parametrize("type_,message,site,frames", [
    # the script's own paths, and a write the OS refused under DeepSpeed (write_denied, environment)
    ("FileNotFoundError", "[Errno 2] No such file or directory: 'data.json'", "/w/train.py:<module>", []),
    ("NotADirectoryError", "[Errno 20] Not a directory: '/data/x/y'", _OS, [_OS, "/w/train.py:<module>"]),
    ("PermissionError", "[Errno 13] Permission denied: '/nvme/zero_stage_3'", _OS,
     [_OS, _DS + "runtime/zero/stage3.py:_configure_tensor_swapping"]),
    ("TypeError", "expected str, bytes or os.PathLike object, not NoneType", "<frozen posixpath>:join",
     ["/w/train.py:<module>"]),
])
def test_look_alikes_are_not_a_config_path(type_, message, site, frames):
    assert classify(type_, message, site, frames).name != "ds_config_path"


def test_autotuning_without_tabulate_is_the_environment():
    # deepspeed/autotuning/autotuner.py Autotuner.__init__ (`deepspeed --autotuning run` without tabulate, run here)
    fam = classify("AssertionError", "Missing required package `tabulate`, please install with `pip install "
                   "deepspeed[autotuning]`.", _DS + "autotuning/autotuner.py:__init__", [])
    assert (fam.name, fam.category) == ("environment", "environment")


_AUTOTUNER = ("[2026-12-06 17:15:58,869] [INFO] [scheduler.py:381:run_experiment] Launching exp_id = 0, exp_name = "
              "profile_model_info, with resource = localhost:0, and ds_config = /w/at/results/profile_model_info/"
              "ds_config.json\n")
_CLEANUP_SSH = ("localhost: ssh: connect to host localhost port 22: Connection refused\n"
                "pdsh@vm: localhost: ssh exited with exit code 255\n")


def test_the_autotuners_clean_up_ssh_is_not_a_node_failure():
    # deepspeed/autotuning/scheduler.py clean_up: pdsh ... pkill -f <exp> after each experiment, even on localhost
    done = ("[2026-12-06 17:18:20,750] [INFO] [scheduler.py:396:run_experiment] Done running exp_id = 0, exp_name = "
            "profile_model_info, with resource = localhost:0\n")
    assert not [f for f in diagnose(_AUTOTUNER + _CLEANUP_SSH + done) if f.severity != "info"]
    # the same lines from the launcher itself (no autotuner) stay a failed ssh
    assert top(_CLEANUP_SSH).category == "environment"


def test_checkpoint_tags_that_differ_under_warn_are_a_warning():
    # runtime/engine.py _checkpoint_tag_validation under tag_validation WARN (the lines of a real 2-rank run here)
    log = "".join(f"[2026-12-06 17:21:41,519] [WARNING] [engine.py:4867:_checkpoint_tag_validation] [rank={r}] The "
                  f"checkpoint tag name 'step2_rank{r}' is not consistent across all ranks. Including rank unique "
                  "information in checkpoint tag could cause issues when restoring with different world sizes.\n"
                  for r in (0, 1)) + "step 2 loss 0.01\n"
    fs = [f for f in diagnose(log) if f.severity != "info"]
    assert [(f.rule, f.severity) for f in fs] == [("log-cfg-ckpt-tag-mismatch", "warning")]
    assert "step2_rank0" in fs[0].title
