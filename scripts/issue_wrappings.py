"""A log pasted inside an issue body, five ways (perturb_realworld.py's and perturb_fixtures.py's
`issue_*` pastes): the user's prose and the template's headings around it, `ds_report` /
`accelerate env` / `transformers env` / `pip list` / torch's build config, the ds_config JSON and
the training loop's code.

The tool output in scripts/issue_text/ was produced on this machine (ds_report's colours taken
off, as a browser's copy takes them off); ds_config.json is tests/configs/hf_zero2_fp16.json with
a `//` comment and a trailing comma; train_loop.txt is dsdoctor/demo/train.py's training loop. The
prose is ours, with words that look like trouble on purpose (error, OOM?, nan, hang, EDIT:, "I
also tried zero3") that say nothing about which failure the log holds.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

TEXT = Path(__file__).resolve().parent / "issue_text"


def _read(name: str) -> str:
    return (TEXT / name).read_text(encoding="utf-8").rstrip("\n")


def _fence(body: str, lang: str = "") -> str:
    return f"```{lang}\n{body.rstrip(chr(10))}\n```"


def _join(*parts: str) -> str:
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


def issue_hf(log: str) -> str:
    """transformers' issue template: System Info (`transformers env`), Reproduction with the config
    and the log fenced, Expected behavior."""
    return _join(
        "### System Info", _read("transformers_env.txt"),
        "### Who can help?", "@deepspeed-maintainers",
        "### Information", "- [ ] The official example scripts\n- [x] My own modified scripts",
        "### Reproduction",
        "I launch my fine-tuning script with the ds_config below. I get an error (OOM? nan?) and "
        "cannot tell what is wrong. This is my ds_config.json:",
        _fence(_read("ds_config.json"), "json"),
        "here is the log:", _fence(log),
        "### Expected behavior", "Training should run to the end without errors or nan loss.")


def issue_ds(log: str) -> str:
    """DeepSpeed's bug template: ds_report before the log, the log in a <details> block, torch's
    build config after it."""
    return _join(
        "**Describe the bug**",
        "Training with ZeRO does not work for me and I do not understand the error message. "
        "I also tried zero3, same thing.",
        "**To Reproduce**",
        "Steps to reproduce the behavior:\n1. `deepspeed train.py --deepspeed ds_config.json`\n2. See the log below",
        "**Expected behavior**", "No error, no OOM, no nan.",
        "**ds_report output**", _fence(_read("ds_report.txt")),
        "**Log**", "<details><summary>log</summary>\n\n" + _fence(log) + "\n\n</details>",
        "**System info (please complete the following information):**",
        " - OS: Linux\n - GPU count and types: 2 GPUs\n - Python version: 3.11.7",
        "<details><summary>torch.__config__.show()</summary>\n\n" + _fence(_read("torch_config.txt")) + "\n\n</details>",
        "**Launcher context**", "the deepspeed launcher")


def issue_code(log: str) -> str:
    """A forum post: a line of prose, the log, then the training loop's code and the config, pip
    list in a collapsed block."""
    return _join(
        "**Describe the bug**", "Does it hang or crash? I cannot tell from the output. here is the log:",
        _fence(log),
        "My training loop:", _fence(textwrap.dedent(_read("train_loop.txt")), "python"),
        "and the config:", _fence(_read("ds_config.json"), "json"),
        "<details><summary>pip list</summary>\n\n" + _fence(_read("pip_list.txt")) + "\n\n</details>")


def issue_reply(log: str) -> str:
    """A thread: the user's post with the log, a maintainer's reply quoting it with '>', the user's
    answer below (accelerate env, the config, an EDIT)."""
    asked = "Can you share the output of `accelerate env` and your ds_config? Is it an OOM?"
    return _join(
        "**user** commented:", "It fails with an error after a few steps, log below.", _fence(log),
        "**maintainer** commented:", "> It fails with an error after a few steps",
        f"Thanks for the report. {asked}",
        "**user** commented:", f"> {asked}",
        "Sure, here it is:", _read("accelerate_env.txt"), _fence(_read("ds_config.json"), "json"),
        "EDIT: I also tried zero3 with a smaller batch: same result.")


def issue_bare(log: str) -> str:
    """A bare forum paste: prose, the log unfenced, `pip list` pasted after an EDIT."""
    return _join(
        "Hi all, my deepspeed job prints the output below, then the error / OOM? / nan? "
        "I searched the forum but found nothing. Here is the log:",
        log,
        "EDIT: pip list:", _read("pip_list.txt"),
        "Thanks in advance!")


ISSUE_WRAPPINGS = {"issue_hf": issue_hf, "issue_ds": issue_ds, "issue_code": issue_code,
                   "issue_reply": issue_reply, "issue_bare": issue_bare}
