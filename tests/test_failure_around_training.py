"""The system around the training loop failing, provoked for real here: a checkpoint not whole, not this
model's, or refused by torch.load's weights_only default; a write the operating system refuses; the HF Hub
offline; a DataLoader worker that stops answering; DeepSpeed resuming from a tag that is not there
(detect/families.py, the failure-* rules of environment.yaml, config_error.yaml, other.yaml)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsdoctor.detect.families import classify

sys.path.insert(0, str(Path(__file__).parent))
from test_failure import ENV, ahead, diagnose, output_of, top  # noqa: E402
from ports import free_port  # noqa: E402
import run_ahead  # noqa: E402

# the real processes below start one test ahead (tests/run_ahead.py); what they write goes to folders of
# their own (a test's tmp_path does not exist yet when they start)
_TRUNCATED = Path(run_ahead.scratch("truncated")) / "ckpt.pt"
TRUNCATED_CHECKPOINT = ahead(f"import torch\ntorch.save({{'w': torch.zeros(5000)}}, {str(_TRUNCATED)!r})\n"
                             f"d = open({str(_TRUNCATED)!r}, 'rb').read(); open({str(_TRUNCATED)!r}, 'wb').write(d[: len(d) // 2])\n"
                             f"torch.load({str(_TRUNCATED)!r})")
OTHER_SHAPE = ahead("import torch\ntorch.nn.Linear(16, 4).load_state_dict(torch.nn.Linear(16, 8).state_dict())")
_PICKLED = Path(run_ahead.scratch("weights-only")) / "ckpt.pt"
WEIGHTS_ONLY = ahead(f"import argparse, torch\ntorch.save({{'args': argparse.Namespace(lr=1.0)}}, {str(_PICKLED)!r})\n"
                     f"torch.load({str(_PICKLED)!r})")


def test_a_truncated_torch_checkpoint_is_a_damaged_file():
    log = output_of(TRUNCATED_CHECKPOINT)
    f = top(log)
    assert (f.rule, f.category) == ("failure-checkpoint-corrupt", "environment"), (f.rule, f.title)
    assert "previous" in f.fixes[0].title


def test_weights_of_another_shape_are_the_models_config():
    log = output_of(OTHER_SHAPE)
    f = top(log)
    assert (f.rule, f.category) == ("failure-state-dict-mismatch", "config_error")
    assert f.evidence[0].text.startswith("RuntimeError: Error(s) in loading state_dict for Linear")


def test_torch_load_weights_only_refusal_is_not_a_damaged_file():
    log = output_of(WEIGHTS_ONLY)
    f = top(log)
    assert f.rule == "failure-torch-load-weights-only" and "weights_only=False" in f.fixes[0].advice


@pytest.mark.skipif(os.geteuid() != 0, reason="drops CAP_DAC_OVERRIDE with setpriv, which needs root")
def test_a_refused_write_is_not_a_full_disk(tmp_path):
    # root without CAP_DAC_OVERRIDE writing into a directory another user owns: a real EACCES
    import shutil
    if not shutil.which("setpriv"):
        pytest.skip("needs util-linux setpriv")
    d = tmp_path / "theirs"
    d.mkdir()
    os.chown(d, 65534, 65534)
    os.chmod(tmp_path, 0o755)
    p = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", sys.executable, "-c",
                        f"import torch; torch.save({{}}, {str(d / 'ckpt.pt')!r})"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    if p.returncode == 0 or "Permission denied" not in p.stderr:
        pytest.skip("this machine did not refuse the write: " + p.stderr[-200:])
    f = top(p.stdout + p.stderr)
    assert (f.rule, f.category) == ("failure-write-denied", "environment"), (f.rule, f.title)


HUB_OFFLINE = run_ahead.QUEUE.add([sys.executable, "-c", "from transformers import AutoConfig\n"
                                   "AutoConfig.from_pretrained('dsdoctor-tests/not-cached-model')"], timeout=180,
                                  env={**ENV, "HF_HOME": str(Path(run_ahead.scratch("hub")) / "hf"), "HF_HUB_OFFLINE": "1"})


def test_the_hub_offline_with_an_uncached_model():
    pytest.importorskip("transformers")
    p = HUB_OFFLINE.run()      # started one test ahead, an empty HF_HOME of its own
    assert p.returncode != 0
    f = top(p.stdout + p.stderr)
    assert (f.rule, f.category) == ("failure-hub-unreachable", "environment"), (f.rule, f.title, p.stderr[-300:])


WORKER_PAST_TIMEOUT = ahead("import time, torch\nfrom torch.utils.data import DataLoader, Dataset\n"
                            "class D(Dataset):\n"
                            "    def __len__(self): return 8\n"
                            "    def __getitem__(self, i):\n"
                            "        time.sleep(30 if i == 2 else 0); return torch.zeros(2)\n"
                            "for b in DataLoader(D(), num_workers=1, batch_size=1, timeout=2): pass\n")


def test_a_dataloader_worker_slower_than_the_timeout():
    log = output_of(WORKER_PAST_TIMEOUT)
    f = top(log)
    assert (f.rule, f.category) == ("failure-dataloader-worker-lost", "other"), (f.rule, f.title)
    assert "num_workers=0" in f.fixes[0].advice


def test_families_of_the_checkpoint_readers():
    site = "/usr/lib/python3/site-packages/"
    load = [site + "torch/serialization.py:load", site + "torch/serialization.py:__init__"]
    assert classify("FileNotFoundError", "[Errno 2] No such file or directory: 'ckpt/x.pt'", load[-1], load).name == \
        "checkpoint_missing"
    assert classify("OSError", "[Errno 22] Invalid argument", load[-1], load).name == "checkpoint_corrupt"
    # the same errno outside a checkpoint read says nothing of a checkpoint
    assert classify("FileNotFoundError", "[Errno 2] No such file or directory: 'data.json'", "train.py:main",
                    ["train.py:main"]).name == "other"
    assert classify("AssertionError", "", site + "deepspeed/runtime/state_dict_factory.py:check_ckpt_list").name == \
        "checkpoint_missing"
    # a ZeRO-3 partitioned parameter (shape [0]) loaded directly is not another architecture
    assert classify("RuntimeError", "size mismatch for w: copying a param with shape torch.Size([8]) from checkpoint, "
                    "the shape in current model is torch.Size([0]).").name == "zero3_partitioned"
    # a lost pipe under the DataLoader's fd sharing is not the network; running out of descriptors is the limit
    mp = ["/usr/lib/python3.11/multiprocessing/resource_sharer.py:detach",
          "/usr/lib/python3.11/multiprocessing/connection.py:_recv"]
    assert classify("ConnectionResetError", "[Errno 104] Connection reset by peer", mp[-1], mp).name == "dataloader_worker"
    assert classify("RuntimeError", "received 0 items of ancdata", mp[-1], mp).name == "open_files"


def test_families_around_the_save_and_the_resume():
    site = "/usr/lib/python3/site-packages/"
    save = [site + "deepspeed/runtime/engine.py:save_checkpoint", site + "torch/serialization.py:__init__"]
    assert classify("RuntimeError", "Parent directory /local_nvme/ckpt/global_step1000 does not exist.", save[-1],
                    save).name == "write_dir_missing"
    assert classify("RuntimeError", "File /mnt/s3fs/ckpt/x.pt cannot be opened.", save[-1], save).name == "write_denied"
    assert classify("RuntimeError", "File config.yaml cannot be opened.", "train.py:main", ["train.py:main"]).name == "other"
    # torch's optimizer refusing the saved states: another set of trainable parameters
    opt = [site + "transformers/trainer.py:_load_optimizer_and_scheduler", site + "torch/optim/optimizer.py:load_state_dict"]
    for msg in ("loaded state dict has a different number of parameter groups",
                "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"):
        assert classify("ValueError", msg, opt[-1], opt).name == "optimizer_state_mismatch"
    # torch.distributed.checkpoint gathers the ranks' own errors: they are the cause, not the wrapper
    assert classify("torch.distributed.checkpoint.api.CheckpointException",
                    "CheckpointException ranks:dict_keys([2, 3])").name == "wrapper"
    # transformers' own checks of its TrainingArguments
    ta = site + "transformers/training_args.py:__post_init__"
    assert classify("ValueError", "At most one of fp16 and bf16 can be True, but not both", ta, [ta]).name == "trainer_args"
    assert classify("KeyError", "The `metric_for_best_model` training argument is set to 'eval_f1', which is not found in "
                    "the evaluation metrics.").name == "trainer_args"


RESUME_SCRIPT = (
        "import sys, torch, deepspeed\n"
        "deepspeed.init_distributed(dist_backend='gloo')\n"
        "m = torch.nn.Linear(4, 2)\n"
        "cfg = {'train_micro_batch_size_per_gpu': 1, 'optimizer': {'type': 'Adam', 'params': {'lr': 1e-3, 'torch_adam': True}},"
        " 'zero_optimization': {'stage': 2}}\n"
        "e, *_ = deepspeed.initialize(model=m, model_parameters=m.parameters(), config=cfg)\n"
        "if sys.argv[1] == 'tag':\n"
        "    e.save_checkpoint(sys.argv[2])\n"
        "    e.load_checkpoint(sys.argv[2], tag='global_step99')\n"
        "else:\n"
        "    _, client = e.load_checkpoint(sys.argv[2])\n"
        "    step = client['step']\n")


def _resume(mode: str) -> run_ahead.Ahead:
    """One mode's process, started one test ahead (tests/run_ahead.py): the script and the checkpoint
    folder in a folder of its own, a free MASTER_PORT when it starts."""
    where = Path(run_ahead.scratch("resume"))

    def setup():
        (where / "resume.py").write_text(RESUME_SCRIPT)
        (where / mode).mkdir()
    return run_ahead.QUEUE.add([sys.executable, str(where / "resume.py"), mode, str(where / mode)], timeout=300,
                               env=lambda: {**ENV, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())},
                               setup=setup)


RESUMES = {mode: _resume(mode) for mode in ("tag", "latest")}


@pytest.mark.slow
def test_deepspeed_resuming_from_a_tag_that_is_not_there():
    """A real 1-rank DeepSpeed engine: save, then load_checkpoint(tag=...) of a tag that was never saved,
    and load_checkpoint of a folder with no `latest` whose (None, None) the script then reads."""
    pytest.importorskip("deepspeed")
    for mode in ("tag", "latest"):
        p = RESUMES[mode].run()
        assert p.returncode != 0, p.stdout[-500:] + p.stderr[-500:]
        f = top(p.stdout + p.stderr)
        assert (f.rule, f.category) == ("failure-checkpoint-missing", "config_error"), (mode, f.rule, f.title)
        if mode == "latest":
            assert any("Unable to find latest file" in e.text for e in f.evidence)
