"""Fallback auto-attach for `dsdoctor run` when dsdoctor_autoattach.pth is not in site-packages
(an install that skipped it). `dsdoctor run` puts this folder first on PYTHONPATH; we run the
bootstrap, then hand over to the sitecustomize this one shadows, if there is one."""
import importlib.util
import os
import sys

try:
    from dsdoctor.live.bootstrap import maybe_install
    maybe_install()
except Exception:
    pass

_here = os.path.dirname(os.path.abspath(__file__))
for _p in sys.path:
    if _p and os.path.abspath(_p) != _here:
        _f = os.path.join(_p, "sitecustomize.py")
        if os.path.isfile(_f):
            _spec = importlib.util.spec_from_file_location("_dsdoctor_next_sitecustomize", _f)
            try:
                _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
            except Exception:
                pass
            break
