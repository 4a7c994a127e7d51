"""A shared library that a GPU library loads on demand is missing, reported by that library
itself rather than as a Python exception: cuDNN 8's sub-library loader prints
'Could not load library {lib}. Error: {dlerror}' and 'Please make sure {lib} is in your library
path!' and aborts the process (SIGABRT, 'Aborted (core dumped)'), at the first convolution or
RNN. The text comes from the closed cuDNN binary (libcudnn.so.8: the strings are in it, not in
any Python source); dlerror() is glibc's '{file}: cannot open shared object file: No such file
or directory'.

TensorFlow's 'Could not load dynamic library ...; dlerror: ...' (stream_executor dso_loader.cc)
is a warning that a torch run importing TensorFlow prints and survives: not this message.
"""
from __future__ import annotations

from ...lazy_regex import compile_later
from ..lines import Line, StreamState
from ..recogniser import on

_CUDNN_LOAD = compile_later(r"\bCould not load library (\S+?)\.? Error: (.*cannot open shared object file.*)$")


@on("Could not load library ")
def cudnn_sublibrary_missing(line: Line, st: StreamState):
    m = _CUDNN_LOAD.search(line.text)
    if not m or not st.once(("missing_library", m.group(1), line.rank)):
        return None
    return line.event("env_error", error="missing_library", op=None, name=m.group(1),
                      message=line.text.strip()[-300:])


# The second line alone (a paste that begins below the first): the library is named there too. Only a
# shared object's name ('lib....so[.N]') counts: the sentence is cuDNN's, the name says it is a library.
_CUDNN_PATH = compile_later(r"\bPlease make sure (lib[\w.+-]*\.so(?:\.\d+)*) is in your library path!")


@on("is in your library path!")
def cudnn_sublibrary_missing_second_line(line: Line, st: StreamState):
    m = _CUDNN_PATH.search(line.text)
    if not m or not st.once(("missing_library", m.group(1), line.rank)):
        return None                 # (the first line named it already: one event)
    return line.event("env_error", error="missing_library", op=None, name=m.group(1),
                      message=line.text.strip()[-300:])
