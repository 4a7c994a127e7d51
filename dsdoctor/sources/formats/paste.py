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
# more Chinese of a re-run: "再跑" ran again, "再次" once more, "重新跑/运行" re-ran, "还是/仍然/依然报" still
# reports, "又出现" appeared again, "换成" switched to, "调小/调大/减小/降低/增大" lowered/raised (a setting)
_ZH_MORE = ("后再", "再跑", "再次", "重新跑", "重新运行", "还是报", "仍然报", "依然报", "又出现", "换成", "调小", "调大",
            "减小", "降低", "增大")
_TRIGGERS = ("after I ", "After I ", "after we ", "After we ",
             *(f"{a} {v}" for a in ("after", "After") for v in _VERBS if v.endswith("ing")),
             "now I get", "now I got", "I now get", "now I'm getting", "now getting", "now it fails",
             "second attempt", "Second attempt", "second run", "Second run", "second try", "Attempt 2", "attempt 2",
             "2nd attempt", "2nd run", "Run 2", "run #2", "Now:", "now:", "Now ", "And now", "and now",
             "different error", "another error", "new error", "EDIT:", "Edit:", "UPDATE:", "Update:", " instead",
             "之后", "修改后", "改成", "改为", "现在报", "又报", "新的错误", "另一个错误", *_ZH_MORE)
# the user saying what they did before the next block, in the first person, without "after" or "now":
# "I reduced the micro batch to 1 and got:", "Then I tried ZeRO-3 with offload:", "We switched to bf16,
# it crashes here:", "I've set pin_memory false", and "(it) still fails/crashes/OOMs with ..."
_PAST = tuple(v for v in _VERBS if not v.endswith("ing")) + ("reran", "re-ran", "ran it again", "retried", "upgraded")
# (the verb alone is the scanner's literal, with its leading space: a literal per subject and verb
# made ~140 of them, and the scan of every log slows with their number; the regex below decides)
_TRIGGERS += (*(f" {v}" for v in _PAST),
              "still fail", "still crash", "still get", "still OOM", "still happen", "still the same", "same error")
_FIRST_PERSON = compile_later(
    r"(?i)(?:^|[\s,;(])(?:I|we)(?:'ve| have)?(?: then| also| just| now)? (?:" + "|".join(_PAST) + r")\b"
    r"|\bstill (?:fail|crash|get|getting|got|OOM|happen)|\bstill the same\b|\bsame error\b")
_RERUN = compile_later(
    r"(?i)(?:\bafter (?:I |we )?(?:" + "|".join(_VERBS) + r")\b|\bnow (?:I |we )?(?:get|got|am getting|'m getting|getting)\b"
    r"|\bI now get\b|\bnow it fails\b|\b(?:second|2nd) (?:attempt|run|try)\b|\b(?:attempt|try) #?2\b|\brun #2\b"
    r"|(?-i:^Run 2\b)|^(?:and )?now\b[^.]{0,60}:$|\b(?:a |an )?(?:different|another|new) error\b"
    r"|^(?:edit|update)\b.{0,120}:$"
    r"|之后|修改后|改成|改为|现在报|又报|新的错误|另一个错误|" + "|".join(_ZH_MORE) + r"|\binstead\b[^.]{0,60}:$)")
# a log line, not prose: a timestamp, a level, a traceback, an exception line (its message may say
# 'After fixing the issue ...': ray.train's TrainingFailedError) or a rank prefix
_LOGGY = compile_later(r"\d\d:\d\d:\d\d|\[(?:INFO|WARNING|ERROR|DEBUG)\]|\b(?:INFO|WARNING|ERROR)\b[:\s-]|Traceback|File \"|"
                       r"^\s*(?:\[?rank\d|[\w.]+(?:Error|Exception|Warning)\b)|\|")
# a line of the training script pasted with the log, not prose: a print/raise/logger call, an
# f-string, an assignment ('print(f"[rank {rank}] hanging ...")' in an issue's code block)
_CODE = compile_later(r"^(?:print|logger\.\w+|logging\.\w+|warnings\.warn)\s*\(|^(?:raise|assert|return|yield)\s+[\w.]+\("
                      r"|\bf[\"']|^[A-Za-z_][\w.]*(?:\[[^\]]*\])?\s*[-+*/]?=\s*[^=\s]")


def _not_prose(text: str) -> bool:
    return len(text) > 400 or bool(_LOGGY.search(text)) or bool(_CODE.search(text))


# A block of pasted output inside an issue body or a forum post: a Markdown code fence ('```',
# '```text', '~~~') opens it and the next one closes it. The block's first line is where that paste
# begins, as line 1 is for a bare paste: an excerpt may begin inside a traceback (traceback.py) or
# inside a burst of collective timeouts (detect/comm.py) there.
_FENCE = compile_later(r"(?:```|~~~)[\w+.-]*")
PASTE_BLOCK = "paste.block"       # scratch: the first line of the last block a fence opened


@on("```", "~~~")
def paste_fence(line: Line, st: StreamState):
    if not _FENCE.fullmatch(line.text.strip().lstrip("> ").strip()):
        return None
    if st.scratch.get("paste.fence_open"):
        st.scratch["paste.fence_open"] = False         # the closing fence
        return None
    st.scratch["paste.fence_open"] = True
    st.scratch[PASTE_BLOCK] = line.lineno + 1
    return line.event("paste_block", first_line=line.lineno + 1)


# the user's line that introduces a bare (unfenced) paste: 'Here is the log:', 'Full output:', 'I get
# this error:' (prose, ending with a colon, that names what follows)
# (not an exception line of a dotted name, 'torch._dynamo.exc.Unsupported: error:', nor a tool's own
# 'srun: error:' line)
_INTRO = compile_later(r"(?i)^(?![\w]+(?:\.\w+)+: |\S+: (?:error|warning)\b).*\b(?:logs?|output|errors?|traceback|"
                       r"stack ?trace|trace)\b[^:.]{0,30}:$")


# (each literal with its leading space or '*': one that extends a literal another recogniser has,
# 'Error:' of 'Error', hides it where both start, sources/scanner.py keeps one match per position)
@on(" log:", " logs:", " output:", " error:", " errors:", " traceback:", " trace:", " below:", "*Log:", "*Output:",
    "*Error:")
def paste_intro(line: Line, st: StreamState):
    text = line.text.strip().lstrip("#*>- ").rstrip("* ")
    if not text.endswith(":") or line.text[:1] in " \t" or _not_prose(text) or not _INTRO.search(text):
        return None
    st.scratch[PASTE_BLOCK] = line.lineno + 1
    return line.event("paste_block", first_line=line.lineno + 1)


@on(*_TRIGGERS)
def rerun_prose(line: Line, st: StreamState):
    text = line.text.strip().lstrip("#*>- ").strip()
    if _not_prose(text) or not (_RERUN.search(text) or _FIRST_PERSON.search(text)):
        return None
    return line.event("rerun", phrase=text[:200])


# A hang said in prose ("it hangs at ...", "training gets stuck after ...", "nothing happens",
# "卡住"): a log that stops with no error is what a hang leaves, and only the person who watched
# it knows it stopped moving. The cue is the wording family of a hang said by a person: a verb
# form of hanging/sticking/freezing whose subject is the run (it, the training, the job, the
# process, a rank, a GPU ...), within a few words. Library sentences with the same words
# (torch's, DeepSpeed's, transformers' and accelerate's warnings: "frozen parameters",
# "torch.jit.freeze", "might ... freeze", "to avoid deadlocks", "can cause the process to hang")
# have no such subject or say it as a possibility; a question ("could this cause a hang?"), a
# negation ("it no longer hangs") and a number that stopped moving ("the loss is stuck") are not
# reports. Chinese, Japanese and Korean verbs of a hang are reports on their own.
_HANG_TRIGGERS = (" hang", "Hang", " hung", "stuck", "Stuck", "freezes", "Freezes", "froze", "Froze", "stall",
                  "deadlock", "othing happens", "othing happened", "proceed", "move on", "forever",
                  "卡住", "卡在", "卡死", "不动", "没有反应", "没反应", "无响应", "停在", "一直等", "フリーズ", "止まっ",
                  "固まっ", "멈춰", "멈춤", "멈추")
_SUBJECT = (r"(?:it|training|train|the run|run|job|process(?:es)?|program|script|code|everything|deepspeed|trainer|"
            r"gpus?|nodes?|ranks?|rank \d+|workers?|machine|launcher|torchrun|accelerate|this|that|which)")
_HANG_VERB = (r"(?:hangs?(?=\s+(?:at|on|in|after|when|while|during|forever|indefinitely|here|there|for|before|until|"
              r"right|again|every|the|without|with)\b|\s*[.!?:,)]|\s*$)|hanging|hung|(?:is|are|gets?|got|getting|was|"
              r"were|stays?|remains?|seems?|be|'s)\s+(?:\w+\s+)?stuck|stuck\s+(?:at|on|in|after|when|during|forever|"
              r"there|here|for|while)|freezes\b|froze\b|stall(?:s|ed)\b|deadlock(?:s|ed)\b|waits? forever|"
              r"(?:does not|doesn't|never|won't|will not|didn't|did not|cannot|can't)\s+(?:proceed|progress|continue|"
              r"move on|go on))")
_HANG = compile_later(
    r"(?i)\b" + _SUBJECT + r"\b(?:\W+\w+){0,3}?\W+" + _HANG_VERB + r"|\bnothing (?:happens|happened)\b"
    r"|卡住|卡在|卡死|不动|没有反应|没反应|无响应|停在|一直等|フリーズ|止まっ|固まっ|멈춰|멈춤|멈추")
# "could this cause a hang", "to avoid a deadlock", "it no longer hangs", "without hanging"
_HANG_NOT = compile_later(
    r"(?i)\b(?:could|might|may|would|should|can|avoid|avoids|prevent|prevents|cause|causes|risk|debug|diagnose|"
    r"detect|possible)\b[^.]{0,60}?\b(?:hang|stuck|freez|deadlock|stall|wait forever)"
    r"|\b(?:not|no longer|never|without|n't)\s+(?:\w+\s+){0,2}?(?:hang|hung|stuck|freez|froze|stall|deadlock)"
    r"|\bstuck (?:with|on) (?:this|that|the|an?|my) (?:error|issue|problem|bug)"      # the user is stuck, not the run
    r"|watchdog|heartbeat|ProcessGroup|NCCL_|TORCH_|Warning\b|\.py:\d+"   # a library's message quoted without its head ...
    r"|\b(?:loss|losses|accuracy|acc|lr|learning rate|metrics?|ppl|perplexity|grad_?norm|gradient norm|scale|"
    r"reward|score|value)\b[^.]{0,20}?\b(?:stuck|stall|froze|frozen|freez|hang|hung)|local minim"   # a number that stopped moving
    r"|(?<!seems )(?<!appears )(?<!started )(?<!starts )\bto hang\b|\brecommended\b")   # ... or its advice ('can cause X to hang')


@on(*_HANG_TRIGGERS)
def hang_prose(line: Line, st: StreamState):
    text = line.text.strip().lstrip("#*>- ").strip()
    if _not_prose(text) or not _HANG.search(text) or _HANG_NOT.search(text):
        return None
    if st.scratch.get("hang_said"):
        return None           # the first report is enough
    st.scratch["hang_said"] = True
    return line.event("hang_said", phrase=text[:200])
