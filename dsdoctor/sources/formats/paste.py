"""What a log pasted into an issue says about itself: the user's prose between two attempts.

An issue body often holds two runs: the first failure, then "after I changed X I now get" a
second one. Both are in one input, but only the last is the problem still open (the user already
applied the first one's fix), so the prose that opens a later attempt is an event (`rerun`); the
pipeline (pipeline.Diagnoser.findings) then ranks the last attempt's failures first. The cue is
the wording family of a re-run said in prose, never a log line: a line that holds a timestamp,
a log level or a traceback is not prose.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

# "after I changed / after setting / after switching ...", "now I get", "second attempt", "Attempt 2"
# and a prose line that opens the next block with "now" ("Now:", "Now it fails with:"), "a different
# / another / new error", an "EDIT: ...:" or "Update: ...:" line that introduces a block, and the
# Chinese of LLaMA-Factory / ms-swift threads ("修改后" after changing, "之后" after, "改成" changed to,
# "现在报" now reports, "又报" reports again, "新的错误" a new error)
# ("then I get" is left out: "it runs 100 steps and then I get" opens the only attempt)
_VERBS = ("changed", "changing", "set", "setting", "added", "adding", "removed", "removing", "switched",
          "switching", "reduced", "reducing", "increased", "increasing", "enabled", "enabling", "disabled",
          "disabling", "updated", "updating", "upgraded", "upgrading", "installed", "installing", "lowered",
          "lowering", "turned", "turning", "tried", "used", "using", "replaced", "replacing", "modified",
          "modifying", "fixed", "fixing")
_TRIGGERS = ("after I ", "After I ", "after we ", "After we ",
             *(f"{a} {v}" for a in ("after", "After") for v in _VERBS if v.endswith("ing")),
             "now I get", "now I got", "I now get", "now I'm getting", "now getting", "now it fails",
             "second attempt", "Second attempt", "second run", "Second run", "second try", "Attempt 2", "attempt 2",
             "2nd attempt", "2nd run", "Run 2", "run #2", "Now:", "now:", "Now ", "And now", "and now",
             "different error", "another error", "new error", "EDIT:", "Edit:", "UPDATE:", "Update:",
             "之后", "修改后", "改成", "改为", "现在报", "又报", "新的错误", "另一个错误")
# the user saying what they did before the next block, in the first person, without "after" or "now":
# "I reduced the micro batch to 1 and got:", "Then I tried ZeRO-3 with offload:", "We switched to bf16,
# it crashes here:", "I've set pin_memory false", and "(it) still fails/crashes/OOMs with ..."
_PAST = tuple(v for v in _VERBS if not v.endswith("ing")) + ("reran", "re-ran", "ran it again", "retried", "upgraded")
_TRIGGERS += (*(f"{w} {v}" for w in ("I", "we", "We", "I've", "I have", "we've") for v in _PAST),
              "still fail", "still crash", "still get", "still OOM", "still happen", "still the same", "same error")
_FIRST_PERSON = compile_later(
    r"(?i)(?:^|[\s,;(])(?:I|we)(?:'ve| have)?(?: then| also| just| now)? (?:" + "|".join(_PAST) + r")\b"
    r"|\bstill (?:fail|crash|get|getting|got|OOM|happen)|\bstill the same\b|\bsame error\b")
_RERUN = compile_later(
    r"(?i)(?:\bafter (?:I |we )?(?:" + "|".join(_VERBS) + r")\b|\bnow (?:I |we )?(?:get|got|am getting|'m getting|getting)\b"
    r"|\bI now get\b|\bnow it fails\b|\b(?:second|2nd) (?:attempt|run|try)\b|\b(?:attempt|try) #?2\b|\brun #2\b"
    r"|(?-i:^Run 2\b)|^(?:and )?now\b[^.]{0,60}:$|\b(?:a |an )?(?:different|another|new) error\b"
    r"|^(?:edit|update)\b.{0,120}:$"
    r"|之后|修改后|改成|改为|现在报|又报|新的错误|另一个错误)")
# a log line, not prose: a timestamp, a level, a traceback, an exception line (its message may say
# 'After fixing the issue ...': ray.train's TrainingFailedError) or a rank prefix
_LOGGY = compile_later(r"\d\d:\d\d:\d\d|\[(?:INFO|WARNING|ERROR|DEBUG)\]|\b(?:INFO|WARNING|ERROR)\b[:\s-]|Traceback|File \"|"
                       r"^\s*(?:\[?rank\d|[\w.]+(?:Error|Exception|Warning)\b)|\|")


@on(*_TRIGGERS)
def rerun_prose(line: Line, st: StreamState):
    text = line.text.strip().lstrip("#*>- ").strip()
    if len(text) > 400 or _LOGGY.search(text) or not (_RERUN.search(text) or _FIRST_PERSON.search(text)):
        return None
    return line.event("rerun", phrase=text[:200])
