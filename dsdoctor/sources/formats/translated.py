"""Recogniser: lines of a machine that runs in another language, and the error line of a shell tool.

With LANG=zh_CN.UTF-8 (de_DE, ja_JP, ...) the run's own lines stay English, but what bash and the C
library say is translated: bash's job report of a process the OOM killer ended reads
'./run.sh: 第 14 行：  4127 已杀死   python train.py' instead of './run.sh: line 14:  4127 Killed ...'
(bash jobs.c prints strsignal(), glibc's translation), and a tool's 'No space left on device' is
'设备上没有空间' (strerror()). `translated_line` reads such a line as the English line it stands for
(the table of real translations is sources/translations.py, data read from the .mo files) and hands
it to the recognisers of the English text; the events keep the user's own line as evidence.

`tool_error` reads the error line of a command-line tool in the coreutils/bash form 'prog: what:
strerror' (gnulib error(), bash's error.c): a job script's `cp` of a checkpoint, its `tar`, a shell
redirection, ending in a full disk or a failed allocation: what the job did last, in the tool's words. Python's own OSError lines ('[Errno 28]
...') are the traceback recogniser's.
"""
from __future__ import annotations

import dataclasses
import re

from ...events import Event
from ...findings import clip
from ...lazy_regex import compile_later
from ..lines import MAX_EVIDENCE_TEXT, Line, StreamState
from ..recogniser import on
from ..translations import TRANSLATIONS
from .traceback import frameless_exception

# literal -> recognisers, the registry's table (sources/registry.py fills it: it imports this module)
HANDLERS: dict[str, list] = {}
_LINE_HEAD_ID = "%s: line %d: "
_UNANCHORED = (".traceback", ".error_lines")
# the translated texts, longest first (one may hold a shorter one: 'Terminado (killed)' / 'Terminado')
# (bash has ' (core dumped)' and '(core dumped) ', often translated alike: both read ' (core dumped) ')
_WORDS = sorted(((tr, " (core dumped) " if "core dumped" in en else en) for en, tr, _ in TRANSLATIONS
                 if en != _LINE_HEAD_ID), key=lambda p: -len(p[0]))
_WORD_RE = compile_later("|".join(re.escape(tr) for tr, _ in _WORDS))
_ENGLISH = dict(_WORDS)


def _head_pattern(fmt: str) -> str:
    return re.escape(fmt).replace("%s", "(?P<w{}>.*?)").replace("%d", r"(?P<n{}>\d+)")


# bash's translated job-report heads ('%s: 第 %d 行：', '%s: Zeile %d: '): one regex, one group pair each
_HEADS = [fmt for en, fmt, _ in TRANSLATIONS if en == _LINE_HEAD_ID]
_HEAD_RE = compile_later("^(?:" + "|".join(
    _head_pattern(f).replace("{}", str(i), 2) for i, f in enumerate(_HEADS)) + ")")
# the literals the scanner looks for: the translated words (a head alone says nothing)
_LITERALS = tuple(dict.fromkeys([tr.strip() for tr, _ in _WORDS if tr.strip()]))


def english(text: str) -> str:
    """`text` with its translated shell/libc messages in English."""
    m = _HEAD_RE.match(text)
    if m:
        i = next(k for k, v in m.groupdict().items() if v is not None and k[0] == "w")[1:]
        text = f"{m.group('w' + i)}: line {m.group('n' + i)}: " + text[m.end():]
    return _WORD_RE.sub(lambda m: _ENGLISH[m.group(0)], text)


@on(*_LITERALS)
def translated_line(line: Line, st: StreamState):
    text = line.text
    en = english(text)
    if en == text:
        return None
    # the recognisers a trigger of the English text calls, except those the line already reached
    # (a trigger outside the translated words: their recognisers had the line as it is). Under a
    # translated bash head ('bash: 1 行: 4127 Segmentation fault', ja has no text for it) an English
    # word is read again, now behind an English head, by all but the unanchored readers of any line
    # (tracebacks, error levels), which had it already.
    head = _HEAD_RE.match(text) is not None
    rest = _WORD_RE.sub(" ", text)
    out: list[Event] = []
    done = {id(translated_line)}
    eline = line.with_text(en)
    evidence = clip(text, MAX_EVIDENCE_TEXT)     # (as Line.event cuts it)
    for trig, handlers in HANDLERS.items():      # (a rare line: every literal is looked for)
        if trig not in en or (trig in rest and not head):
            continue
        for h in handlers:
            if id(h) in done or (trig in rest and h.__module__.endswith(_UNANCHORED)):
                continue
            done.add(id(h))
            got = h(eline, st)
            if got is None:
                continue
            out.extend(dataclasses.replace(ev, text=evidence) for ev in ([got] if isinstance(got, Event) else got))
    return out or None


# coreutils/gnulib error(): 'program: message: strerror'; bash: './run.sh: line 9: echo: write error: ...'
_STRERRORS = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Cannot allocate memory")
_TOOL_ERROR = compile_later(r"^((?:[\w.~+-]*/)*[a-z][\w.+-]*): ((?:.*: )?(?:" + "|".join(map(re.escape, _STRERRORS))
                            + r"))\.?$")


@on(*_STRERRORS)
def tool_error(line: Line, st: StreamState):
    """A tool's error line, read like an exception of the tool (argparse's error line is one too:
    formats/traceback.py), so it is weighed and classified by its wording (detect/families.py)."""
    m = _TOOL_ERROR.match(line.text.strip())
    if not m:
        return None
    prog = m.group(1).rsplit("/", 1)[-1]
    return frameless_exception(line, st, prog, prog, m.group(2), raise_site=f"shell:{prog}")
