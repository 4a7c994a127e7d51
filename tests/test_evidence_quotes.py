"""What a finding quotes: the message line, not the traceback's source line that holds the same
literal; a long line cut in its middle, so its start (the error) and its end (an exit code after a
launcher's whole command line) both stay."""
from __future__ import annotations

from dsdoctor.api import analyze
from dsdoctor.findings import clip


def test_clip_keeps_the_start_and_the_end():
    line = "[ERROR] [launch.py:259:sigkill_handler] [" + ", ".join(f"'--arg{i}'" for i in range(80)) + \
           "] exits with return code = -9"
    out = clip(line, 240)
    assert out.startswith("[ERROR] [launch.py:259:sigkill_handler]") and out.endswith("exits with return code = -9")
    assert " … " in out and len(out) <= 243
    assert clip("short", 240) == "short"


# transformers 4.2-4.8 deepspeed.py deepspeed_init: `raise ValueError("ZeRO Offload can only work with
# DeepSpeed optimizers")`, printed by the traceback as its source line and then as the message
TRACEBACK = """Traceback (most recent call last):
  File "train.py", line 541, in main
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
  File "/usr/lib/python3.8/site-packages/transformers/trainer.py", line 1118, in train
    deepspeed_engine, optimizer, lr_scheduler = deepspeed_init(
  File "/usr/lib/python3.8/site-packages/transformers/deepspeed.py", line 329, in deepspeed_init
    raise ValueError("ZeRO Offload can only work with DeepSpeed optimizers")
ValueError: ZeRO Offload can only work with DeepSpeed optimizers
"""


def test_the_message_line_is_quoted_not_the_raise_statement(tmp_path):
    log = tmp_path / "train.log"
    log.write_text(TRACEBACK)
    top = analyze(log).findings[0]
    assert top.rule == "log-cfg-client-optimizer-offload"
    quoted = [e.text for e in top.evidence]
    assert "ValueError: ZeRO Offload can only work with DeepSpeed optimizers" in quoted
    assert not any(q.lstrip().startswith("raise ") for q in quoted)
