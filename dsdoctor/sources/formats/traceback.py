"""Python tracebacks and stack dumps: remember the frames so an error line can say in which
phase of training it happened (init, forward, backward, ZeRO-3 fetch, step, checkpoint), and
report the exception line that ends a traceback as an `exception` event, whatever its type
and wording (detect/failure.py picks the decisive one of a run).

Texts: CPython's traceback module (Lib/traceback.py: 'Traceback (most recent call last):',
'  File "{}", line {}, in {}', the chain separators _cause_message / _context_message, and
'{type}: {message}' as the last line); Python/errors.c ('Exception ignored in: ...', printed
for errors in __del__ and the like, which do not stop the program); libstdc++'s
'terminate called after throwing an instance of ...' for a C++ exception that aborts."""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import FROM_FILE, FROM_RECOGNISER, Line, StreamState, armed_within
from ..recogniser import on
from .paste import PASTE_BLOCK

_FRAME = compile_later(r'File "([^"]+)", line \d+, in (\S+)')
_PYSPY = compile_later(r"^\s+(\S+) \(([^:()]+\.py):\d+\)")
MAX_FRAMES = 60


@on("Traceback (most recent call last)")
def _start(line: Line, st: StreamState) -> None:
    st.frames[line.rank] = []
    st.scratch.setdefault("tb.open", {})[line.rank] = line


HEADLESS_WITHIN = 5       # lines: an excerpt (a file, or an issue's fenced block: paste.py) that starts inside a traceback


# A SyntaxError (IndentationError, TabError) says where in its own lines, not in a frame
# (Lib/traceback.py TracebackException._format_syntax_error: '  File "{file}", line {n}', the source
# line, the carets, then 'SyntaxError: {msg}'); a script that does not compile has no traceback above.
_SYNTAX_AT = compile_later(r'File "([^"]+)", line (\d+)$')
SYNTAX_WITHIN = 4


@on('File "')
def _frame(line: Line, st: StreamState) -> None:
    m = _FRAME.search(line.text)
    if m:
        _add_frame(line, st, m.group(1), m.group(2))
        return
    m = _SYNTAX_AT.search(line.text.rstrip())
    if m:
        st.scratch.setdefault("tb.syntax", {})[line.rank] = (line.lineno, f"{m.group(1)}:{m.group(2)}")
        st.scratch.setdefault(TB_TAIL, {})[line.rank] = line.lineno


def _add_frame(line: Line, st: StreamState, path: str, func: str) -> None:
    if (line.lineno <= HEADLESS_WITHIN or 0 <= line.lineno - st.scratch.get(PASTE_BLOCK, -HEADLESS_WITHIN) < HEADLESS_WITHIN) \
            and line.rank not in st.frames:
        # the excerpt starts below its 'Traceback' line: the frames still belong to one (a
        # print_stack() further down a log has no exception line and stays unreported)
        st.scratch.setdefault("tb.open", {})[line.rank] = line
    fr = st.frames.setdefault(line.rank, [])
    st.scratch.setdefault(TB_TAIL, {})[line.rank] = line.lineno
    fr.append(f"{path}:{func}")
    if len(fr) > MAX_FRAMES:
        del fr[: len(fr) - MAX_FRAMES]


# A traceback's exception line says whatever its class is called (zipfile.BadZipFile, filelock._error.Timeout,
# packaging.version.InvalidVersion, a script's own TrainingDiverged): no literal finds it. It is the line
# right after the last frame (Lib/traceback.py StackSummary.format: '  File ...', then its source line
# '    {code}', then on 3.11+ a line of '~~~^^^' markers under it): the frame line continues into its code
# line, that into its markers, and each of them into a line holding a capital letter (a class's name starts
# with one), which exception_line reads. Only the few lines right after a frame are looked at.
PIN_CALL, PIN_FRAME = ".pin_memory(", "<source>:pin_memory"     # a code line's page-locking call, kept as a frame
TB_TAIL = "tb.tail"           # scratch: rank -> number of the traceback's last frame, code or marker line
# (the code line by its indent, or by the statement most raise sites end with: a paste whose lines
# lost their indent, '    raise BadZipFile(...)' become 'raise BadZipFile(...)')
CODE_LINES = ("    ", "raise ")
MARKERS = "^"
CAPITALS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@on(continuation=CODE_LINES, after=('File "',), chain=False)
@on(continuation=(MARKERS,), after=CODE_LINES, chain=False)
def _frame_source(line: Line, st: StreamState) -> None:
    if line.rank in st.frames:
        st.scratch.setdefault(TB_TAIL, {})[line.rank] = line.lineno
        if PIN_CALL in line.text:
            # Tensor.pin_memory() is a C call with no frame of its own: its source line is the only trace of it
            st.frames[line.rank].append(PIN_FRAME)


# An exception group's sub-exceptions are printed one after another inside its box, each under a
# '+-+---------------- 1 ----------------' / '+---------------- 2 ----------------' separator
# (Lib/traceback.py TracebackException.format); a sub-exception the group was built with and that was
# never raised has no traceback: its exception line follows the separator.
TB_GROUP = "tb.group"         # scratch: rank -> (chain_of, box depth) of the open exception group
GROUP_SEPARATOR = "---------------- "


@on(GROUP_SEPARATOR)
def _group_separator(line: Line, st: StreamState) -> None:
    if line.rank in st.scratch.get(TB_GROUP, {}) and line.text.lstrip()[:1] == "+":
        st.scratch.setdefault(TB_TAIL, {})[line.rank] = line.lineno


# IPython's own traceback (Jupyter, Colab, Kaggle; IPython/core/tbtools.py _format_filename and
# ultratb.py VerboseTB): a frame head is 'File /path/to/file.py:1537, in Trainer.train(self, ...)'
# (the path with ~ for the home folder, the function by its qualified name) or 'Cell In[5], line 3,
# in train(steps)' for code typed into a cell; IPython 8.0-8.5 wrote 'Input In [5], in <cell line: 3>()'.
# The frame is the same path:function a CPython frame gives (the method's own name: the phases and
# families look for 'engine.py:__init__').
_IPY_FRAME = compile_later(r"^\s*(?:File ((?:[~/]|[A-Za-z]:\\)\S*?):\d+|(Cell In\s?\[\d+\]|Input In \[\d+\])(?:, line \d+)?)"
                           r"(?:, in ([\w.<>: ]+?)\()?")


# (coloured, as a notebook stores it and a terminal copy keeps it, each token has its own colour code:
# '\x1b[36mFile \x1b[39m\x1b[32m/path.py:12', '\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[4]')
# IPython 7 (Colab's for years; ultratb.py VerboseTB.format_record: '%s %s' % (link, call)) wrote
# '/usr/local/lib/python3.10/dist-packages/transformers/trainer.py in train(self, ...)' and
# '<ipython-input-5-3435b262f1ae> in <module>' (IPython/core/compilerop.py code_name).
_IPY7_FRAME = compile_later(r"^\s*((?:[~/]|[A-Za-z]:\\)\S*?\.py|<ipython-input-\d+-[0-9a-f]+>) in ([\w.<>]+)")


@on("File /", "File ~", "Cell In[", "Input In [", "File \x1b[", "Cell\x1b[", "<ipython-input-", ".py in ",
    ".py\x1b[0m in ")
def _ipython_frame(line: Line, st: StreamState) -> None:
    m = _IPY_FRAME.match(line.text)
    if m:
        _add_frame(line, st, m.group(1) or m.group(2), (m.group(3) or "<module>").rsplit(".", 1)[-1])
        return
    m = _IPY7_FRAME.match(line.text)
    if m:
        _add_frame(line, st, m.group(1), m.group(2).rsplit(".", 1)[-1])


# (phase, frame predicates). Checked in this order: specific phases first, because a
# ZeRO-3 fetch or an optimizer step also has forward()/backward() frames further out.
_PHASES: list[tuple[str, tuple[str, ...]]] = [
    # inside vLLM's engine (site-packages/vllm/: an RL trainer's rollouts, TRL use_vllm, OpenRLHF's
    # LLMRayActor): its memory is vLLM's gpu_memory_utilization share, not the DeepSpeed engine's
    ("vllm_engine", ("/vllm/",)),
    # page-locking host memory: Tensor.pin_memory() (ZeRO-Offload's CPU buffers, a script's own) or the
    # DataLoader's pin thread (torch/utils/data/_utils/pin_memory.py); cudaHostAlloc's failure is 'CUDA error:
    # out of memory' though the memory is the host's
    ("pin_memory", (PIN_FRAME, "_utils/pin_memory.py:")),
    # deepspeed/utils/zero_to_fp32.py (and its functions called from a script): the fp32 model rebuilt in host RAM
    ("checkpoint_convert", ("zero_to_fp32.py:", "convert_zero_checkpoint_to_fp32_state_dict",
                            "get_fp32_state_dict_from_zero_checkpoint", "load_state_dict_from_zero_checkpoint")),
    ("checkpoint_load", ("load_checkpoint", "_load_checkpoint", "load_state_dict_from", "serialization.py:load",
                         "_load_zero_checkpoint", "load_module_state_dict")),
    ("checkpoint_save", ("save_checkpoint", "_save_checkpoint", "_save_zero_checkpoint", "serialization.py:save")),
    # DeepSpeed-Inference placing / kernel-injecting the model: deepspeed/__init__.py init_inference ->
    # inference/engine.py InferenceEngine.__init__ -> module_inject (replace_module, containers' create_module)
    ("inference_init", ("init_inference", "inference/engine.py:__init__", "/module_inject/")),
    ("init", ("deepspeed/__init__.py:initialize", "_configure_optimizer", "_configure_zero_optimizer",
              "initialize_optimizer_states", "_configure_basic_optimizer", "_create_fp32_partitions",
              "_setup_for_real_optimizer", "engine.py:__init__", "stage_1_and_2.py:__init__", "stage3.py:__init__")),
    ("zero3_fetch", ("fetch_sub_module", "partitioned_param_coordinator.py", "_all_gather", "allgather_params",
                     "pre_sub_module_forward_function", "pre_sub_module_backward_function",
                     "_pre_forward_module_hook", "all_gather_coalesced")),
    # transformers/generation/utils.py GenerationMixin.generate -> _sample / _beam_search / _assisted_decoding
    # (RL trainers' rollouts, predict_with_generate): the KV cache grows with every generated token
    ("generate", ("/generation/utils.py:",)),
    # transformers/trainer.py Trainer.evaluate -> evaluation_loop -> prediction_step (and the
    # logits gathered across ranks in _nested_gather / distributed_concat)
    ("eval", ("trainer.py:evaluate", "evaluation_loop", "prediction_step", "prediction_loop", "_nested_gather",
              "trainer.py:predict")),
    ("step", ("engine.py:step", "_take_model_step", "engine.py:_step", "stage_1_and_2.py:step", "stage3.py:step",
              "fused_adam.py:step", "cpu_adam.py:step", "optimizer.py:step", "optim/adam", "optim/adamw",
              "_optimizer_step", "fused_optimizer.py:step", "bf16_optimizer.py:step")),
    # (DeepSpeed before 0.16 also had the ZeRO optimizers' own backward: stage3.py / stage_1_and_2.py backward)
    ("backward", ("engine.py:backward", "stage3.py:backward", "stage_1_and_2.py:backward", "autograd/__init__.py:backward", "_engine_run_backward", "run_backward",
                  "_tensor.py:backward", "reduce_ipg_grads", "allreduce_bucket", "reduce_partition_and_remove_grads")),
    # transformers/trainer.py Trainer.compute_loss: the model's forward (training_step also holds the backward)
    ("forward", (":forward", "_call_impl", "_wrapped_call_impl", "module.py:__call__", "trainer.py:compute_loss")),
]


def phase_of(frames: list[str] | None) -> str | None:
    if not frames:
        return None
    for phase, keys in _PHASES:
        for fr in frames:
            if any(k in fr for k in keys):
                return phase
    return None


_DATALOADER_FUNCS = ("_try_get_data", "_get_data", "_next_data", "__next__")


def wait_site(path: str, func: str) -> str | None:
    """Where a thread with this frame waits: 'collective' (torch.distributed, deepspeed.comm),
    'dataloader' (the DataLoader fetching a batch), 'op_lock' (a JIT op build's lock file), or None. Read the innermost frame first:
    a stack dump's thread and an interrupted traceback wait where the first such frame is."""
    if "torch/utils/data/" in path:
        return "dataloader" if func in _DATALOADER_FUNCS else None
    if "torch/utils/file_baton.py" in path:
        return "op_lock"        # cpp_extension._jit_compile waits for another process's build (its `lock` file)
    if "distributed_c10d.py" in path or ("deepspeed/comm/" in path and not func.startswith("build")):
        return "collective"     # (deepspeed/comm/torch.py build_shm_op loads an op: no collective)
    return None


def waits_in(frames: list[str] | None) -> tuple[str, str] | None:
    """(where, 'path:func') of the innermost waiting frame of a traceback's 'path:func' frames."""
    for fr in reversed(frames or []):
        path, _, func = fr.rpartition(":")
        where = wait_site(path, func)
        if where:
            return where, fr
    return None


def _code_below(frames: list[str], frame: str) -> bool:
    """Is there a frame of the script's or a library's own code (not torch's, not the standard
    library's) below `frame`? Under the DataLoader's fetch that is the dataset or the collate_fn."""
    below = frames[frames.index(frame) + 1:] if frame in frames else []
    for fr in below:
        path = fr.rpartition(":")[0].replace("\\", "/")
        lib = "site-packages/" in path or "dist-packages/" in path
        std = "/lib/python3" in path or "/Lib/" in path          # (Windows: C:/Python311/Lib/queue.py)
        if (lib and "/torch/" not in path) or (not lib and not std):
            return True
    return False


def take_frames(line: Line, st: StreamState) -> list[str] | None:
    """The frames of the traceback that `line` (an exception line) ends; clears them. Kept
    for the generic exception recogniser below, which runs after the specific ones."""
    fr = st.frames.pop(line.rank, None)
    if fr is None and line.rank is not None:
        fr = st.frames.pop(None, None)
    if fr is not None:
        st.scratch["tb.taken"] = (line.lineno, line.rank, fr)
    return fr


def take_phase(line: Line, st: StreamState) -> str | None:
    """Phase of the traceback that `line` (an exception line) ends; clears it."""
    return phase_of(take_frames(line, st))


# ---------------------------------------------------------------- the exception line
# '{module.}Type: message' or 'Type' alone, at the start of the line (Lib/traceback.py
# format_exception_only; a private class keeps its underscore: torch._C._LinAlgError). Without an
# open traceback only names that say they are an error are taken (ValueError, ZeRORuntimeException,
# SystemExit, KeyboardInterrupt): pasted excerpts often start below the 'Traceback' line.
_EXC = compile_later(r"^(?P<type>(?:[A-Za-z_][\w]*\.)*(?P<name>_?[A-Z][\w]*))(?::\s(?P<msg>.*)|:?\s*)$")
_ERROR_NAME = compile_later(r"(?:Error|Exception|Exit|Interrupt|Failure|Fault|StopIteration)$")
_CHAIN = {"The above exception was the direct cause of the following exception": "cause",
          "During handling of the above exception, another exception occurred": "context"}
_TERMINATE = compile_later(r"terminate called after throwing an instance of '([^']+)'")


@on(*_CHAIN)
def _chain(line: Line, st: StreamState) -> None:
    back = st.scratch.get("elastic.given_back")
    if back is not None and back[0] is not None and armed_within(back[1], line, 3):
        from .launcher import lend_rank        # a chained exception inside a torchelastic record
        lend_rank(st, back[0])
    links = st.scratch.setdefault("tb.link", {})
    last = st.scratch.get("tb.last", {}).get(line.rank)
    if last is not None:
        links[line.rank] = (next(v for k, v in _CHAIN.items() if k in line.text), last)


@on("Exception ignored in")
def _ignored(line: Line, st: StreamState) -> None:
    # errors in __del__ / atexit / threads are printed and the program goes on
    st.scratch.setdefault("tb.ignored", set()).add(line.rank)


# StopIteration (next() on an exhausted iterator) and queue.Empty (a get() with a timeout) end
# tracebacks with names that say neither Error nor Exception; so does a Warning raised as an exception
# (deepspeed/runtime/zenflow/engine.py configure_zenflow `raise Warning(...)`, run here), taken only
# inside an open traceback like every name that does not say Error. Neither do many classes of a
# module named for its exceptions (torch/_dynamo/exc.py Unsupported, FailOnRecompileLimitHit;
# torch/_inductor/exc.py InvalidCxxCompiler; requests/exceptions.py ConnectTimeout, ReadTimeout):
# their qualified name says it
_NAMED = ("Error", "Exception", "KeyboardInterrupt", "SystemExit", "StopIteration", ".Empty", "Warning: ", ".exc.",
          ".exceptions.")


@on(*_NAMED)
@on(continuation=CAPITALS, after=('File "', *CODE_LINES, MARKERS, GROUP_SEPARATOR), chain=False)
def exception_line(line: Line, st: StreamState):
    text = line.text.rstrip()
    bare = text.lstrip()
    depth = None
    if bare[:2] == "| ":
        # inside an exception group's box (PEP 654, Lib/traceback.py _ExceptionPrintContext.emit: each
        # line of a group's traceback and of its sub-exceptions' behind '  | ', indented per level)
        depth = len(text) - len(bare)
        text = bare[2:]
        bare = text.lstrip()
    m = _EXC.match(bare)
    if not m:
        return None
    name = m.group("name")
    frames = st.frames.get(line.rank)
    if frames is None and line.rank is not None:
        frames = st.frames.get(None)
    taken = st.scratch.get("tb.taken")
    if frames is None and taken and taken[0] == line.lineno:
        frames = taken[2]                   # a specific recogniser of this line took them first
    group = st.scratch.get(TB_GROUP, {}).get(line.rank) if depth is not None else None
    # (a sub-exception the group was built with, never raised, has no traceback of its own)
    in_tb = frames is not None or group is not None
    if not _ERROR_NAME.search(name) and not (in_tb and name[:1].isupper() and text[:1] != " "):
        return None
    if text[:1] in " \t" and not in_tb:
        return None                         # indented: a quoted message, not a raised exception
    if not _ERROR_NAME.search(name) and not any(t in text for t in _NAMED):
        if not _ends_traceback(line, st, m):
            return None                     # a line that only followed a frame
    elif m.group("msg") is None and "." not in m.group("type") and not _ERROR_NAME.search(name):
        return None
    opened = st.scratch.get("tb.open", {})
    opened.pop(line.rank, None) if line.rank in opened else opened.pop(None, None)
    ignored = st.scratch.get("tb.ignored", set())
    if line.rank in ignored:
        ignored.discard(line.rank)
        st.frames.pop(line.rank, None)
        return None
    if frames is not None:
        st.frames.pop(line.rank, None) if line.rank in st.frames else st.frames.pop(None, None)
    link = st.scratch.get("tb.link", {}).pop(line.rank, None)
    inner = st.scratch.get(TB_INNER, {}).pop(line.rank, None)
    if link is None and inner is not None and armed_within(inner[0], line, 1):
        link = ("cause", inner[1])          # the wrapped exception, on the line under its wrapper's
    chain_of, chained = (link[1], link[0]) if link else (line.lineno, None)
    if depth is None:
        st.scratch.get(TB_GROUP, {}).pop(line.rank, None)
    elif group is not None and (depth > group[1] or not name.endswith("ExceptionGroup")):
        chain_of, chained = group[0], "group"       # a sub-exception: what the group is made of
    elif name.endswith("ExceptionGroup"):
        st.scratch.setdefault(TB_GROUP, {})[line.rank] = (chain_of, depth)
    st.scratch.setdefault("tb.last", {})[line.rank] = chain_of
    msg = (m.group("msg") or "").strip()
    type_ = m.group("type")
    half = len(type_) // 2
    if msg[:1] == ":" and type_[:half] == type_[half:]:
        # two processes printed one exception at the same moment, piece by piece (CPython's own printer
        # writes the name, ': ' and the message apart): 'ValueErrorValueError: : msg0msg1'
        type_, msg = type_[:half], msg[1:].strip()
        name = type_.rsplit(".", 1)[-1]
    if "elastic.saved_hint" in st.scratch:
        from .launcher import give_back_rank   # the end of a traceback inside a torchelastic record
        give_back_rank(st, line.lineno)
    wait = waits_in(frames)
    if wait and wait[0] == "dataloader" and name != "KeyboardInterrupt" and _code_below(frames, wait[1]):
        wait = None     # the batch's own code raised (a collate_fn's KeyError): a crash in the data path, no wait
    detail = _assert_source(line, st) if name == "AssertionError" and not msg and in_tb else \
        _grad_source(line, st, msg) if in_tb and name in ("AttributeError", "TypeError") else None
    if _WRAPS_NEXT.match(msg):
        st.scratch.setdefault(TB_INNER, {})[line.rank] = (line.lineno, chain_of)
    if msg.startswith(STATE_DICT_HEAD):
        st.scratch.setdefault("tb.state_dict", {})[line.rank] = [line.lineno, line.lineno, set()]
    elif not msg and in_tb:
        st.scratch.setdefault("tb.empty", {})[line.rank] = line.lineno   # its message may be on the next line
    if line.rank is None and RAY_SNIPPET in st.scratch:
        line = _snippet_rank(line, st)
    site = frames[-1] if frames else None
    if name in ("SyntaxError", "IndentationError", "TabError"):
        at = st.scratch.get("tb.syntax", {}).pop(line.rank, None)
        if armed_within(at, line, SYNTAX_WITHIN):
            site = at[1]                    # the file and line that did not compile
    return line.event("exception", step=st.step_of(line.rank), type=type_, name=name,
                      message=msg[:500], phase=phase_of(frames), in_traceback=in_tb,
                      raise_site=site, frames=list(frames[-6:]) if frames else [],
                      chained=chained, chain_of=chain_of, waits_in=wait[0] if wait else None,
                      wait_frame=wait[1] if wait else None, host=line.host or _wrapped_host(line, st),
                      **({"detail": [list(detail)]} if detail else {}),
                      # under generate (its frames past the innermost six): ranks that generate different lengths
                      **({"in_generate": True} if frames and any(GENERATE_FRAME in f for f in frames) else {}))


# torch._dynamo's BackendCompilerFailed (torch/_dynamo/exc.py: f"backend={name!r} raised:\n{type(inner).__name__}:
# {inner}"): the exception its backend raised is the next line, which says what failed to compile.
_WRAPS_NEXT = compile_later(r"^backend='[^']*' raised:$")
TB_INNER = "tb.inner"         # scratch: rank -> (line, chain_of) of a wrapper whose wrapped exception comes next

_CAMEL = compile_later(r"[a-z0-9][A-Z]")


def _ends_traceback(line: Line, st: StreamState, m) -> bool:
    """A line found only because it follows a frame (no literal of exception_line's own) is the
    exception line when a traceback is open on its rank, its last frame, code or marker line is just
    above, and the name looks like a class's: qualified by its module ('zipfile.BadZipFile': a class
    outside builtins and __main__ is printed so) or in CamelCase ('TrainingDiverged'), not a
    'Loss: 2.3' another process printed in between."""
    opened = st.scratch.get("tb.open", {})
    if line.rank not in opened and None not in opened and line.rank not in st.scratch.get(TB_GROUP, {}):
        return False
    if not armed_within(st.scratch.get(TB_TAIL, {}).get(line.rank), line, 4):
        return False
    return "." in m.group("type") or _CAMEL.search(m.group("name")) is not None


RAY_WRAPPED = "ray.wrapped"     # scratch: (line, ip) of the last Ray wrapper line (formats/ray.py)


def _wrapped_host(line: Line, st: StreamState) -> str | None:
    """The node of the worker whose traceback a Ray wrapper line ('RayTaskError(...): ray::A.f()
    (pid=.., ip=..)') introduced: the driver prints it without the worker's prefix."""
    w = st.scratch.get(RAY_WRAPPED)
    if not armed_within(w, line, 2 * MAX_FRAMES + 20):
        return None
    del st.scratch[RAY_WRAPPED]
    return w[1]


RAY_SNIPPET = "ray.snippet"     # scratch: (line, rank) of Ray Train's last '[Rank N Error Snippet]:' (formats/ray.py)


def _snippet_rank(line: Line, st: StreamState) -> Line:
    """The driver's copy of a worker's traceback under Ray Train's '[Rank N Error Snippet]:' is
    that rank's (the driver prints it without the worker's prefix)."""
    w = st.scratch[RAY_SNIPPET]
    if not armed_within(w, line, 2 * MAX_FRAMES + 20):
        return line
    del st.scratch[RAY_SNIPPET]
    return line.with_rank(w[1], FROM_RECOGNISER)


def frameless_exception(line: Line, st: StreamState, type_: str, name: str, message: str,
                        raise_site: str | None = None, chained: str | None = None, chain_of: int | None = None,
                        **extra):
    """An `exception` event read from a line with no Python frames behind it (a C++ terminate,
    a c10 error, argparse's error line): its message cut at 500 characters, its chain starting
    at `chain_of` or at this line."""
    return line.event("exception", step=st.step_of(line.rank), type=type_, name=name, message=message[:500],
                      phase=None, in_traceback=False, raise_site=raise_site, frames=[], chained=chained,
                      chain_of=line.lineno if chain_of is None else chain_of, **extra)


@on("terminate called after throwing an instance of")
def cxx_terminate(line: Line, st: StreamState):
    m = _TERMINATE.search(line.text)
    if not m:
        return None
    # the message follows on the '  what():  ...' line (cxx_what); hardware.py reads CUDA errors there.
    # Kept under no rank when its rank is only the file's (a 'rank0' in the log's name): the what()
    # may name its own ('[Rank 3] Watchdog caught ...')
    key = None if line.rank_from == FROM_FILE else line.rank
    st.scratch.setdefault("tb.terminate", {})[key] = (line.lineno, m.group(1))
    return frameless_exception(line, st, m.group(1), m.group(1).split("::")[-1], "", aborted=True)


# libstdc++'s verbose terminate handler (libstdc++-v3/libsupc++/vterminate.cc) prints the
# exception's what() on the next line: '  what():  <message>'. It is the message of the
# exception above, so it joins that exception's group (detect/failure.py reads one verdict
# from the pair: a c10::DistBackendError whose what() is the NCCL watchdog's timeout is a
# communication timeout, not an anonymous native crash).
_WHAT_MAX_GAP = 3        # lines between the terminate line and its what(): interleaved ranks


@on("what():")
def cxx_what(line: Line, st: StreamState):
    opened = st.scratch.get("tb.terminate", {})
    at = opened.pop(line.rank, None)
    if at is None and line.rank is not None:
        # the message names its rank ('[Rank 3] Watchdog caught ...', lines.clean reads it) while
        # libstdc++'s terminate line above it, printed without a rank prefix, names none
        at = opened.pop(None, None)
    if not armed_within(at, line, _WHAT_MAX_GAP):
        return None
    msg = line.text.split("what():", 1)[1].strip()
    type_ = at[1]
    return frameless_exception(line, st, type_, type_.split("::")[-1], msg, chained="cause", chain_of=at[0],
                               aborted=True)


# c10::Error's backtrace header (c10/util/Exception.cpp): 'Exception raised from {func} at {file}:{line}
# (most recent call first):'. The frames that follow name the C++ function that raised; the
# NCCL watchdog's timeout is raised in ProcessGroupNCCL's WorkNCCL::checkTimeout.
_C10 = compile_later(r"Exception raised from (\S+) at (\S+?):(\d+) \(most recent call first\)")


@on("Exception raised from ")
def c10_error(line: Line, st: StreamState):
    m = _C10.search(line.text)
    if not m:
        return None
    logged = st.scratch.get("c10.logged")
    if logged and armed_within(logged.get(line.rank), line, 6):   # a few lines: the log line may come hard-wrapped
        # the backtrace of an error a log line reported (formats/nccl.py rendezvous_error): its
        # frames below are read as this head's too
        st.scratch.setdefault("c10.last", {})[line.rank] = line.lineno
        return None
    seen = st.scratch.setdefault("c10.seen", set())
    if (line.rank, m.group(1)) in seen:
        return None             # the same error's backtrace printed again (what() and the log)
    seen.add((line.rank, m.group(1)))
    st.scratch.setdefault("c10.last", {})[line.rank] = line.lineno
    return frameless_exception(line, st, "c10::Error", "c10::Error", f"raised from {m.group(1)} at {m.group(2)}:{m.group(3)}",
                               raise_site=f"{m.group(2)}:{m.group(1)}")


# c10's backtrace of a c10::Error ('frame #0: c10::Error::Error(...) + 0x42 (0x... in libc10.so)',
# c10/util/Backtrace.cpp) follows its 'Exception raised from ...' line; an excerpt that starts at
# the frames still shows an error thrown, and frame #1 says where
_C10_FRAME = compile_later(r"^frame #(\d+): (.+?)(?: \+ 0x[0-9a-f]+)? \(0x[0-9a-f]+ in ([^)]+)\)")


@on("frame #0: ", "frame #1: ")
def c10_frames_without_their_head(line: Line, st: StreamState):
    m = _C10_FRAME.match(line.text)
    if not m:
        return None
    st.scratch.setdefault("c10.early", {})[line.rank] = line.lineno      # (for the handler below)
    if m.group(1) == "0":
        if "c10::Error" in m.group(2):
            st.scratch.setdefault("c10.frame0", {})[line.rank] = line.lineno
        return None
    frame0 = st.scratch.get("c10.frame0", {}).pop(line.rank, None)
    if not armed_within(frame0, line, 2, same_line=True):
        return None
    head = st.scratch.get("c10.last", {}).get(line.rank)
    if head is not None and frame0 - head <= 3:
        return None                 # its 'Exception raised from' line was read
    func = m.group(2)
    return frameless_exception(line, st, "c10::Error", "c10::Error", f"thrown in {func} (its message is not in the log)",
                               raise_site=f"{m.group(3).rsplit('/', 1)[-1]}:{func}")


# The same backtrace with frames #0 and #1 cut off too (a paste's last lines): a later frame that is
# an error class's constructor ('frame #2: c10::DistNetworkError::DistNetworkError(c10::SourceLocation,
# std::...)', c10/util/Exception.h: every c10 error is built from a SourceLocation) still shows that
# error thrown, and names its class
_C10_CTOR = compile_later(r"^((?:\w+::)*(\w*Error))::\2\(c10::SourceLocation")


@on("Error(c10::SourceLocation")
def c10_error_constructor_frame(line: Line, st: StreamState):
    m = _C10_FRAME.match(line.text)
    if not m or int(m.group(1)) < 2:
        return None
    ctor = _C10_CTOR.match(m.group(2))
    if not ctor:
        return None
    near = lambda key: line.lineno - st.scratch.get(key, {}).get(line.rank, -99) <= 12   # noqa: E731
    if near("c10.early") or near("c10.last") or near("c10.ctor"):
        return None                 # its head or its first frames were read: the error is known
    st.scratch.setdefault("c10.ctor", {})[line.rank] = line.lineno
    return frameless_exception(line, st, ctor.group(1), ctor.group(2),
                               "thrown by c10 (its message and first frames are not in the log)")


# torch 2.13's form of that backtrace (c10/util/Exception.cpp with TORCH_SHOW_CPP_STACKTRACES=1,
# torch/csrc/profiler/combined_traceback.cpp): 'C++ CapturedTraceback:' then '#4 {func} from {file}:{line}'
# ('??:0' when unsymbolised). Its 'Exception raised from' head may be cut off a paste: the frames
# still show an error thrown, the first frame past the error's own construction says where, and a
# constructor frame ('c10d::DistBackendError::DistBackendError(...)') names the error's class.
_CT_FRAME = compile_later(r"^#(\d+) (.+?) from (\S+)$")
_CT_CTOR = compile_later(r"^((?:\w+::)*(\w*Error))::\2\(")
_CT_PLUMBING = ("c10::Error::Error(", "c10::SetStackTraceFetcher", "std::_Function_handler", "c10::detail::torchCheckFail",
                "c10::detail::torchCheckMsgImpl", "c10::get_backtrace", "c10::get_lazy_backtrace")


# (the error's own constructor frame is a trigger too: a blank line, as a wrapped frame rejoined
# leaves behind, ends a chain of continued lines)
@on("C++ CapturedTraceback:", "c10::Error::Error(", continuation=(" from ",))
def captured_traceback_without_its_head(line: Line, st: StreamState):
    armed = st.scratch.setdefault("c10.ct", {})
    if "CapturedTraceback:" in line.text:
        head = st.scratch.get("c10.last", {}).get(line.rank)
        armed[line.rank] = None if armed_within(head, line, 2) else (line.lineno, None)
        return None
    at = armed.get(line.rank)
    m = _CT_FRAME.match(line.text.strip())
    if m and at is None and m.group(2).startswith("c10::Error::Error(") and line.rank not in armed:
        # the error's own construction with the 'C++ CapturedTraceback:' header above the paste's cut:
        # the frames below it still say what threw (its 'Exception raised from' head is gone too)
        head = st.scratch.get("c10.last", {}).get(line.rank)
        if not (head is not None and line.lineno - head <= 12):
            at = armed[line.rank] = (line.lineno, None)
    if not m or not armed_within(at, line, 12, same_line=True):
        return None
    func, where = m.group(2), m.group(3)
    ctor = _CT_CTOR.match(func)
    if ctor:
        armed[line.rank] = (at[0], ctor.group(1))
        return None
    if func.startswith(_CT_PLUMBING):
        return None
    del armed[line.rank]
    type_ = at[1] or "c10::Error"
    name = func.split("(", 1)[0]
    return frameless_exception(line, st, type_, type_.split("::")[-1], f"thrown in {name} (its message is not in the log)",
                               raise_site=f"{where.rsplit('/', 1)[-1]}:{name}", chain_of=at[0])


@on("WorkNCCL::checkTimeout")
def c10_nccl_timeout(line: Line, st: StreamState):
    seen = st.scratch.setdefault("c10.seen", set())
    if (line.rank, "checkTimeout") in seen:
        return None
    seen.add((line.rank, "checkTimeout"))
    first = st.scratch.get("c10.last", {}).pop(line.rank, None)
    return frameless_exception(line, st, "c10::Error", "c10::Error",
                               "collective operation timeout (ProcessGroupNCCL WorkNCCL::checkTimeout)",
                               raise_site="ProcessGroupNCCL.cpp:checkTimeout",
                               chained="cause" if first is not None else None, chain_of=first)


# c10/cuda/CUDAException.cpp c10_cuda_check_implementation: 'CUDA error: {msg}' then these
# lines; an excerpt that starts below the first one still holds a CUDA error
_CUDA_ADVICE = "CUDA kernel errors might be asynchronously reported at some other API call"


@on(_CUDA_ADVICE)
def cuda_error_without_its_line(line: Line, st: StreamState):
    for last in (st.scratch.get("tb.last_cuda"), st.scratch.get("tb.last", {}).get(line.rank)):
        if armed_within(last, line, 2, same_line=True):
            return None             # the error line just above (a CUDA error, or the exception carrying it)
    if "CUDA error" in line.text:                 # the message and the advice on one line
        return None
    return frameless_exception(line, st, "(CUDA error, its first line cut)", "CUDA error (its first line is not in the log)",
                               line.text.strip(), host=line.host)


@on("CUDA error: ")
def _cuda_error_line(line: Line, st: StreamState) -> None:
    st.scratch["tb.last_cuda"] = line.lineno


def finish(st: StreamState):
    """End of input: a traceback whose exception line never came (a log cut short, a process
    killed while printing) still says the run failed."""
    for rank, start in (st.scratch.get("tb.open") or {}).items():
        frames = st.frames.get(rank) or []
        yield start.event("exception", step=st.step_of(rank), type="(traceback without its exception line)",
                          name="(unknown)", message="", phase=phase_of(frames), in_traceback=True,
                          raise_site=frames[-1] if frames else None, frames=list(frames[-6:]), chained=None,
                          chain_of=start.lineno, truncated=True)


# argparse (Lib/argparse.py ArgumentParser.error): 'usage: ...' then '{prog}: error: {message}', exit
# code 2. The DeepSpeed launcher passes --local_rank to every rank unless --no_local_rank is given
# (deepspeed/launcher/runner.py, launch.py), so a script that does not declare it stops here.
# A subcommand's prog is its parent's and its own name ('train.py worker', 'accelerate launch').
_ARGPARSE = compile_later(r"^(\S+(?: [\w.-]+){0,2}): error: (.+)$")


@on("usage: ")
def _usage(line: Line, st: StreamState) -> None:
    if line.text.startswith("usage: "):
        st.scratch.setdefault("argparse.usage", {})[line.rank] = line.lineno


@on(": error: ")
def argparse_error(line: Line, st: StreamState):
    m = _ARGPARSE.match(line.text.strip())
    if not m:
        return None
    usage = st.scratch.get("argparse.usage", {}).pop(line.rank, None)
    if not armed_within(usage, line, 40, same_line=True):
        return None                     # 'srun: error: ...', 'pdsh@x: error' and the like are not argparse
    return frameless_exception(line, st, "argparse error", "ArgumentError", m.group(2),
                               raise_site=f"argparse:{m.group(1)}", prog=m.group(1))


# `python -m {module}` whose module (or its package) the interpreter cannot import: CPython's runpy prints one
# line and exits 1, no traceback (Lib/runpy.py _get_module_details: "Error while finding module specification for
# {mod!r} ({type}: {msg})"; Modules/main.c pymain_run_module: "{python}: " before it). A launcher's `python -m
# deepspeed.launcher.launch` on a node whose python lacks DeepSpeed (pdsh runs the remote shell's python) says
# '/usr/bin/python3: Error while finding module specification for 'deepspeed.launcher.launch'
# (ModuleNotFoundError: No module named 'deepspeed')' (run here with the system python).
_RUNPY = compile_later(r"^(\S+): Error while finding module specification for '([\w.]+)' \((\w+): (.+)\)\s*$")


@on("Error while finding module specification for ")
def runpy_module_missing(line: Line, st: StreamState):
    m = _RUNPY.match(line.text.strip())
    if not m:
        return None
    return frameless_exception(line, st, m.group(3), m.group(3), m.group(4),
                               raise_site=f"runpy:{m.group(2)}", python=m.group(1))


# ---------------------------------------------------------------- what a bare message leaves out
# A bare `assert x` raises AssertionError with no message: the traceback's last frame shows the
# statement's source line ('    assert numel % world_size == 0', Lib/traceback.py StackSummary.format:
# the line under its 'File ...' line, then on 3.11+ a line of carets). That line is what failed.
ASSERT_SOURCE_WITHIN = 3      # lines between the source line and the exception line (the carets)


@on("assert ")
def _assert_line(line: Line, st: StreamState) -> None:
    t = line.text
    if t[:1] in (" ", "\t") and t.lstrip().startswith("assert ") and line.rank in st.frames:
        st.scratch.setdefault("tb.assert", {})[line.rank] = (line.lineno, t.strip())


def _assert_source(line: Line, st: StreamState) -> tuple[int, str] | None:
    src = st.scratch.get("tb.assert", {}).pop(line.rank, None)
    if not armed_within(src, line, ASSERT_SOURCE_WITHIN):
        return None
    return src


# A script's own line that reads a parameter's `.grad` ('    gn = sum(p.grad.norm() ** 2 for p in ...)'): when it
# raises on None ("'NoneType' object has no attribute 'norm'"), the line says the gradient was missing. Under
# ZeRO (stages 1-3) engine.backward leaves param.grad None (the gradients live in ZeRO's partitions; run here,
# part AG), so that line is what failed (detect/zero3_misuse.py grad_read_family).
_GRAD_READ = compile_later(r"\.grad\b")


@on(".grad")
def _grad_read_line(line: Line, st: StreamState) -> None:
    t = line.text
    if t[:1] in (" ", "\t") and line.rank in st.frames and _GRAD_READ.search(t):
        st.scratch.setdefault("tb.grad", {})[line.rank] = (line.lineno, t.strip())


def _grad_source(line: Line, st: StreamState, msg: str) -> tuple[int, str] | None:
    src = st.scratch.get("tb.grad", {}).pop(line.rank, None)
    if "'NoneType' object" not in msg or not armed_within(src, line, ASSERT_SOURCE_WITHIN):
        return None
    return src


# torch's load_state_dict ends its message with one tab-indented line per mismatch
# (torch/nn/modules/module.py Module.load_state_dict: 'Error(s) in loading state_dict for {cls}:'
# then '\tMissing key(s) in state_dict: "a", "b". ', '\tUnexpected key(s) in state_dict: ...',
# '\tsize mismatch for {key}: copying a param with shape ... from checkpoint, the shape in current
# model is ....', '\tWhile copying the parameter named "{key}", ...'; transformers'
# modeling_utils._load_state_dict_into_model raises the same text). The exception line holds only
# the head: the first line of each kind says what did not fit, and becomes an `exception_detail`.
GENERATE_FRAME = "/generation/utils.py:"     # transformers GenerationMixin.generate and its decoding loops
STATE_DICT_HEAD = "Error(s) in loading state_dict for "
STATE_DICT_DETAIL = ("Missing key(s) in state_dict", "Unexpected key(s) in state_dict", "size mismatch for ",
                     "While copying the parameter named")
STATE_DICT_GAP = 4            # a detail line this close below the previous one continues the message
DETAIL_CHARS = 240


@on(*STATE_DICT_DETAIL)
def state_dict_detail(line: Line, st: StreamState):
    open_ = st.scratch.get("tb.state_dict", {})
    at = open_.get(line.rank) or (open_.get(None) if line.rank is not None else None)
    if at is None or not armed_within(at[1], line, STATE_DICT_GAP):
        return None
    at[1] = line.lineno
    text = line.text.strip()
    kind = next(k for k in STATE_DICT_DETAIL if k in text)
    if kind in at[2] or len(at[2]) >= 3:
        return None                         # the first line of each kind says enough
    at[2].add(kind)
    return _detail(line, at[0], text)


def _detail(line: Line, of: int, text: str):
    """One line of the message of the exception at line `of`, shortened."""
    return line.event("exception_detail", of=of, text=text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…")


# A message raised as a triple-quoted string starts on the line after the exception's name, which then
# shows none: safetensors/torch.py _evaluate_tensors_for_save ('RuntimeError: ' then '    Some tensors share
# memory, this will lead to duplicate memory on disk ...: [{...}].'; run here by zero_to_fp32.py
# --safe_serialization of a model with tied weights). The known first lines become the message's detail.
EMPTY_MESSAGE_HEADS = ("Some tensors share memory, this will lead to duplicate memory on disk",)
EMPTY_MESSAGE_GAP = 2


@on(*EMPTY_MESSAGE_HEADS)
def empty_message_detail(line: Line, st: StreamState):
    at = st.scratch.get("tb.empty", {}).pop(line.rank, None)
    if not armed_within(at, line, EMPTY_MESSAGE_GAP):
        return None
    return _detail(line, at, line.text.strip())
