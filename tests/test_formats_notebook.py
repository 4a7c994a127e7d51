"""Notebooks (sources/notebook.py) and IPython's tracebacks (formats/traceback.py _ipython_frame).

The notebooks under fixtures/excerpts/gen_i_ipynb_* were executed for real (nbclient + ipykernel,
DeepSpeed on the CPU); the tests here build small ones with json."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsdoctor import cli
from dsdoctor.sources import notebook
from dsdoctor.sources.inputs import Input, InputError, check_readable
from dsdoctor.sources.logs import events_from_text, read_log

if not cli.app.registered_commands:
    cli._register()

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "excerpts"
REAL = FIXTURES / "gen_i_ipynb_cuda_oom.ipynb"
OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 14.74 GiB of which "
       "1.12 GiB is free. Of the allocated memory 13.40 GiB is allocated by PyTorch.")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def nb(outputs_per_cell: list[list[dict]]) -> str:
    cells = [{"cell_type": "code", "execution_count": i + 1, "id": f"c{i}", "metadata": {},
              "outputs": outs, "source": "trainer.train()"} for i, outs in enumerate(outputs_per_cell)]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1, sort_keys=True)


def stream(*lines: str) -> dict:
    return {"name": "stdout", "output_type": "stream", "text": [ln + "\n" for ln in lines]}


def error(ename: str, evalue: str, tb: list[str] | None = None) -> dict:
    return {"ename": ename, "evalue": evalue, "output_type": "error",
            "traceback": tb if tb is not None else ["\x1b[31m---------\x1b[39m",
                                                    f"\x1b[31m{ename}\x1b[39m          Traceback (most recent call last)",
                                                    f"\x1b[31m{ename}\x1b[39m: {evalue}"]}


def analyze(path: Path) -> tuple[int, dict | str]:
    res = CliRunner().invoke(cli.app, ["analyze", "--json", str(path)])
    assert "Traceback" not in res.stderr
    return res.exit_code, (json.loads(res.stdout) if res.exit_code in (0, 1) else res.stderr)


def top(doc: dict) -> tuple[str, str]:
    f = doc["findings"][0]
    return f["rule"], f["category"]


def test_a_real_notebook_reads_like_the_text_copied_out_of_it(tmp_path):
    code, doc = analyze(REAL)
    assert code == 1 and top(doc)[1] == "oom"
    # the same outputs as the text a user copies out of the notebook (colours kept, then without them)
    text = notebook.decode(REAL.read_bytes()).decode()
    assert "Traceback (most recent call last)" in text and "'loss'" in text
    for body in (text, ANSI.sub("", text)):
        p = tmp_path / "pasted.log"
        p.write_text(body)
        assert top(analyze(p)[1]) == top(doc)


def test_outputs_come_in_cell_order_and_only_outputs():
    raw = nb([[stream("step 1 loss 2.0")], [], [{"output_type": "execute_result", "execution_count": 3, "metadata": {},
                                                  "data": {"text/plain": ["TrainOutput(global_step=5)"], "text/html": ["<b>x</b>"]}}],
              [error("OutOfMemoryError", OOM)]]).encode()
    lines = notebook.decode(raw).decode().split("\n")
    assert lines[0] == "step 1 loss 2.0" and lines[1] == "TrainOutput(global_step=5)"
    assert not any("trainer.train()" in ln or "<b>" in ln for ln in lines)      # the cells' code, html
    assert lines[-1].endswith(OOM)


def test_an_error_output_without_its_traceback_list_is_read_from_ename_and_evalue(tmp_path):
    p = tmp_path / "run.ipynb"
    p.write_text(nb([[stream("step 1 loss 2.0"), error("OutOfMemoryError", OOM, tb=[])]]))
    code, doc = analyze(p)
    assert code == 1 and top(doc)[1] == "oom"


@pytest.mark.parametrize("cut", [0.55, 0.7, 0.85, 0.97])
def test_a_notebook_cut_short_keeps_what_came_before_the_cut(tmp_path, cut):
    raw = REAL.read_text()
    at = raw.index('"output_type": "error"')
    body = raw[:at + int((len(raw) - at) * cut)]
    with pytest.raises(ValueError):
        json.loads(body)
    p = tmp_path / "cut.ipynb"
    p.write_text(body)
    code, doc = analyze(p)
    assert code == 1 and top(doc)[1] == "oom", doc     # the error output's ename/evalue if its traceback was cut


def test_a_notebook_without_outputs_is_a_one_line_error(tmp_path):
    p = tmp_path / "cleared.ipynb"
    p.write_text(nb([[], []]))
    code, err = analyze(p)
    assert code == 2 and "no cell outputs" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError):
        check_readable(Input(str(p), p, "log", None))


def test_nbformat_3_worksheets_and_strings_instead_of_lists():
    raw = json.dumps({"metadata": {}, "nbformat": 3, "worksheets": [{"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "stream": "stdout", "text": "step 1 loss 2.0\n"},
        {"output_type": "pyerr", "ename": "MemoryError", "evalue": "", "traceback": ["MemoryError: "]}]}]}]}).encode()
    assert not notebook.is_notebook(raw[:0])
    # nbformat 3 starts with "metadata"; its cells are in worksheets
    assert notebook.is_notebook(raw)
    assert notebook.decode(raw).decode().split("\n") == ["step 1 loss 2.0", "MemoryError: "]


def test_what_is_not_a_notebook_is_read_as_it_is():
    assert not notebook.is_notebook(b'{"log":"step 1\\n","stream":"stderr"}\n')       # docker json-file
    assert not notebook.is_notebook(b'{"cells": 3, "step": 5}\n')                       # a JSON-lines record
    assert not notebook.is_notebook(b"step 1 loss 2.0\n")


def test_garbage_in_outputs_is_skipped_not_fatal():
    raw = json.dumps({"cells": [{"cell_type": "code", "outputs": [None, 5, {"output_type": "stream", "text": 7},
                                                                 {"output_type": "error", "traceback": [1, None]},
                                                                 {"output_type": "display_data", "data": [1]}]},
                                "x"], "nbformat": 4}).encode()
    assert isinstance(notebook.decode(raw), bytes)


# ---------------------------------------------------------------- IPython's traceback frames
# IPython 9 (IPython/core/tbtools.py _format_filename, ultratb.py VerboseTB), as ipykernel stored it
IPY9 = ["\x1b[31m---------------------------------------------------------------------------\x1b[39m",
        "\x1b[31mOutOfMemoryError\x1b[39m                          Traceback (most recent call last)",
        "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[4]\x1b[39m\x1b[32m, line 1\x1b[39m",
        "\x1b[32m----> \x1b[39m\x1b[32m1\x1b[39m trainer.train()",
        "",
        "\x1b[36mFile \x1b[39m\x1b[32m~/venv/lib/python3.11/site-packages/deepspeed/runtime/engine.py:2050\x1b[39m, in "
        "\x1b[36mDeepSpeedEngine.backward\x1b[39m\x1b[34m(self, loss, retain_graph, scale_wrt_gas)\x1b[39m",
        "\x1b[32m   2048\x1b[39m     self.optimizer.backward(loss, retain_graph=retain_graph)",
        "",
        f"\x1b[31mOutOfMemoryError\x1b[39m: {OOM}"]
# IPython 7.34 (ultratb.py VerboseTB.format_record: '%s %s' % (link, call); Colab's for years)
IPY7 = ["\x1b[1;31m---------------------------------------------------------------------------\x1b[0m",
        "\x1b[1;31mOutOfMemoryError\x1b[0m                          Traceback (most recent call last)",
        "\x1b[1;32m<ipython-input-5-3435b262f1ae>\x1b[0m in \x1b[0;36m<module>\x1b[1;34m\x1b[0m",
        "\x1b[1;32m---> 1\x1b[1;33m \x1b[0mtrainer\x1b[0m\x1b[1;33m.\x1b[0m\x1b[0mtrain\x1b[0m\x1b[1;33m(\x1b[0m\x1b[1;33m)\x1b[0m",
        "",
        "\x1b[1;32m/usr/local/lib/python3.10/dist-packages/deepspeed/runtime/engine.py\x1b[0m in "
        "\x1b[0;36mbackward\x1b[1;34m(self=<deepspeed.runtime.engine.DeepSpeedEngine object>, loss=tensor(2.31))\x1b[0m",
        "",
        f"\x1b[1;31mOutOfMemoryError\x1b[0m: {OOM}"]


@pytest.mark.parametrize("lines", [IPY9, IPY7], ids=["ipython9", "ipython7"])
@pytest.mark.parametrize("colour", [True, False], ids=["colour", "plain"])
def test_ipython_frames_give_the_phase_and_raise_site(lines, colour):
    text = "\n".join(lines) + "\n"
    if not colour:
        text = ANSI.sub("", text)
    exc = [ev for ev in events_from_text(text) if ev.kind == "exception"]
    assert exc and exc[-1].data["type"] == "OutOfMemoryError"
    assert exc[-1].data["raise_site"].endswith("deepspeed/runtime/engine.py:backward")
    assert exc[-1].data["phase"] == "backward"


def test_a_sentence_with_file_and_in_is_no_frame():
    text = "File /data/train.jsonl is ready, in case you need it\nRuntimeError: boom\n"
    exc = [ev for ev in events_from_text(text) if ev.kind == "exception"]
    assert exc and exc[-1].data["frames"] == []


def test_read_log_of_a_notebook_keeps_no_json(tmp_path):
    p = tmp_path / "run.ipynb"
    p.write_text(nb([[stream("step 1 loss 2.0", "step 2 loss nan")]]))
    texts = [ev.text for ev in read_log(Input(str(p), p, "log", None))]
    assert texts and not any('"text"' in t or "\\n" in t for t in texts)
