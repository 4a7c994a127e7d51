"""Translated shell and C-library messages (sources/translations.py, formats/translated.py) and a
shell tool's error line."""
from __future__ import annotations

import gettext
from pathlib import Path

import pytest

from dsdoctor.sources.formats.translated import english
from dsdoctor.sources.logs import events_from_text
from dsdoctor.sources.translations import TRANSLATIONS

LOCALE = Path("/usr/share/locale")
STEP = "{'loss': 1.7345, 'grad_norm': 0.655, 'learning_rate': 1.8e-05, 'epoch': 0.04}\n"


def test_every_row_is_what_its_mo_file_says():
    """The table is data read from the .mo files: each row still matches its file where the
    file is installed (Debian's libc-l10n and bash put them under /usr/share/locale)."""
    checked = 0
    for en, tr, src in TRANSLATIONS:
        lang, _, name = src.split("/")
        mo = LOCALE / lang / "LC_MESSAGES" / name
        if not mo.exists():
            continue
        t = gettext.GNUTranslations(mo.open("rb"))
        assert t.gettext(en) == tr, src
        checked += 1
    if not checked:
        pytest.skip("no .mo files installed here")


def test_every_translation_reads_back_as_its_english_text():
    for en, tr, _ in TRANSLATIONS:
        if en == "%s: line %d: ":
            assert english((tr % ("./run.sh", 14)) + "  4127 Killed   python train.py") == \
                "./run.sh: line 14:   4127 Killed   python train.py"
        else:
            assert en in english(f"x {tr} y")


def kinds(text: str) -> list[tuple[str, dict, str]]:
    return [(ev.kind, ev.data, ev.text) for ev in events_from_text(text) if ev.kind not in ("loss", "grad_norm", "lr", "step")]


@pytest.mark.parametrize("line", ["./run_sft.sh: 第 14 行：  4127 已杀死                  python train.py",
                                  "./run_sft.sh: Zeile 14:  4127 Getötet                  python train.py",
                                  "./run_sft.sh, linha 14:  4127 Morto                  python train.py",
                                  "./run_sft.sh: 14 行:  4127 強制終了                  python train.py",
                                  "Убито", "죽었음"])
def test_a_translated_job_report_is_the_kill_it_stands_for(line):
    got = kinds(STEP + line + "\n")
    assert [k for k, _, _ in got if k == "killed"]
    assert any(t == line.strip() or line.strip() in t for k, _, t in got if k == "killed")   # the user's own line


@pytest.mark.parametrize("line", [
    # real bash 5.2 output under LC_ALL=<locale> (locales built with localedef)
    "bash: 第 1 行：18202 段错误               （核心已转储）python train.py --deepspeed ds_z3_offload.json",
    "bash: 줄 1: 18212 세그멘테이션 오류 (코어 덤프됨) python train.py --deepspeed ds_z3_offload.json",
    "bash, linha 1: 18217 Falha de segmentação  (imagem do núcleo gravada)python train.py --deepspeed ds_z3_offload.json",
    "bash: 1 行: 18221 Segmentation fault      (コアダンプ) python train.py --deepspeed ds_z3_offload.json",
    "段错误（核心已转储）"])                          # an interactive shell: the text alone
def test_a_translated_segfault_with_core_dump(line):
    got = kinds(STEP + line + "\n")
    assert [d["signal"] for k, d, _ in got if k == "process_exit"] == [11]


@pytest.mark.parametrize("text", ["Terminado el entrenamiento, los pesos están en /ckpt",   # prose: es 'Terminated'
                                  "模型已杀死了所有的噪声",                                      # prose holding '已杀死'
                                  "Beendet: Epoche 3 von 3"])
def test_prose_in_another_language_is_no_job_report(text):
    assert not [k for k, _, _ in kinds(STEP + text + "\n") if k in ("killed", "process_exit")]


@pytest.mark.parametrize("line,family_word", [
    ("cp: error writing '/ckpt/global_step500/mp_rank_00_model_states.pt': No space left on device", "No space left"),
    ("tar: /ckpt/global_step500.tar: Cannot write: No space left on device", "No space left"),
    ("./save.sh: line 9: echo: write error: Disk quota exceeded", "Disk quota exceeded"),
    ("cp: 写入 '/ckpt/x.pt' 时出错: 设备上没有空间", "No space left")])
def test_a_shell_tools_error_line_is_an_exception_of_the_tool(line, family_word):
    exc = [d for k, d, _ in kinds(STEP + line + "\n") if k == "exception"]
    assert exc and family_word in exc[-1]["message"] and exc[-1]["raise_site"].startswith("shell:")


@pytest.mark.parametrize("line", [
    "OSError: [Errno 28] No space left on device: '/ckpt/x.pt'",          # Python's own: the traceback recogniser's
    "RuntimeError: unable to write to file </torch_4242_1234_0>: No space left on device (28)",
    "The disk said No space left on device earlier, I cleaned it"])
def test_other_lines_with_the_strerror_are_not_a_tool_error(line):
    assert not [d for k, d, _ in kinds(line + "\n") if k == "exception" and str(d.get("raise_site", "")).startswith("shell:")]
