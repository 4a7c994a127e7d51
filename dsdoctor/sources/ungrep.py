"""Logs pasted from `grep -n` output: every line starts with its line number in the log, `123:`
for a matching line and `124-` for a context line (`-A/-B/-C`), `--` between groups, and with
a file name first when grep read several files or was given -H (`train.log:123:`). No recogniser
knows a traceback's `Traceback (most recent call last):` or a `[rank3]:` prefix behind such a
number, so this module takes the numbers off again (the paste's own line numbers stay).

Written here because no library undoes grep's prefixes. The cue is structural and decided for
the whole input, never per line: srun --label writes `3: ` (a space after the colon, the same
task number on many lines), grep writes `123:` directly followed by the line, `124-` for context,
and numbers that go up one by one across a context group.
"""
from __future__ import annotations

from .. import regex_cache

MAX_INPUT = 16 << 20          # only pasted-size inputs (one block)
SAMPLE = 64 << 10

# [file(: or -)]N(: or -): a file part holds a letter, '.', '/' or '_' (a bare number is the line's)
_GREP = regex_cache.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z |(?:\x1b\[[0-9;]*m)?(?:> ?)*|\[pod/[^\]\s]+\] | *\d+\t"
                            r"|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d [\w.-]+ [\w./-]+(?:\[\d+\])?: )(?:(?=[^\s:\x1b\[]*[A-Za-z_./])[^\s:\x1b\[]+?[:-])?(\d+)([:-])")
# (a wrapper the paste got after grep stays in front: the "> " of a quote, `kubectl logs --prefix`,
# a terminal's colour code, `cat -n`'s number, journald's head, Docker's time;
# a file name holds no ESC or '[': a coloured line's '\x1b[32m[2024-03-02 ...' is no 'file-03-')


# what follows a log line's own leading number when it is no grep prefix: a time's minutes
# ('10:13:10'), a date's month and day ('2024-07-02', ISO 8601's '2026-12-05T10:00:23Z' of a
# CloudWatch / Cloud Logging export), and NCCL's own head 'host:pid:tid [dev] NCCL
# INFO ...' (src/debug.cc ncclDebugLog), which reads like grep's 'file:123:' up to the thread id; a
# WARN has its source 'file.cc:line ' (2.30: '(func) ') before 'NCCL', and a host named like
# 'gpu-node-12' reads as grep's 'file-12:' with the pid and the thread id still to come, and one
# named like AWS's 'ip-10-0-0-5' as grep's 'ip-10-' with the rest of the host before them
_NOT_GREP = regex_cache.compile(r"\d\d[:.T-]\d\d|(?:[\w.-]*:)?\d+(?::\d+)? \[\d+\] (?:\S+:\d+ )?(?:\(\w+\) )?NCCL ")


def _shape(lines: list[str]) -> bool:
    """Does the text look like grep -n output? At least two lines that only grep writes: `N:`
    with no space after it, or a context line `N-` (srun --label writes `N: `; a line that starts
    with a time or a date is not counted)."""
    own = 0
    for ln in lines:
        m = _GREP.match(ln)
        if not m:
            continue
        rest = ln[m.end():]
        if _NOT_GREP.match(rest):
            continue
        if m.group(3) == "-" or (rest[:1] and not rest[:1].isspace()):
            own += 1
            if own >= 2:
                return True
    return False


def ungrep_text(text: str) -> str:
    return ungrep(text.encode("utf-8", errors="surrogateescape")).decode("utf-8", errors="surrogateescape")


def ungrep(block: bytes) -> bytes:
    """`block` with grep -n's prefixes taken off (unchanged if it is not grep output)."""
    head = block[:SAMPLE]
    if len(block) > MAX_INPUT or (b":" not in head and b"-" not in head):
        return block
    # the shape is decided on the first 64 KiB: decoding and splitting a whole 16 MiB block that is
    # no grep output cost ~80 ms per input
    if not _shape(head.decode("utf-8", errors="surrogateescape").split("\n")[:2000]):
        return block
    lines = block.decode("utf-8", errors="surrogateescape").split("\n")
    out = []
    for ln in lines:
        m = _GREP.match(ln)
        if m and not _NOT_GREP.match(ln, m.end()):
            ln = m.group(1) + ln[m.end():]
        out.append("" if ln.rstrip("\r") == "--" else ln)
    return "\n".join(out).encode("utf-8", errors="surrogateescape")
