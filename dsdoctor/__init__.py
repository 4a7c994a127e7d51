"""dsdoctor: diagnose DeepSpeed training runs and print the ds_config change that fixes them."""
from .version import __version__

__all__ = ["__version__", "attach", "analyze"]


def attach(engine, out=None, **options):
    """Watch a running DeepSpeed engine: `handle = dsdoctor.attach(engine)`; see README."""
    from .live.attach import attach as _attach   # torch is imported only here
    return _attach(engine, out=out, **options)


def analyze(paths, config=None, **options):
    """Diagnose logs a run left behind, like `dsdoctor analyze`: returns a dsdoctor.api.Report
    (`.findings`, `.to_dict()`, `.to_sarif()`, `.exit_code()`, `print(report)`); bad input raises
    dsdoctor.api.AnalyzeError. Options: world_size, all_lines, select, ignore, rules_dirs, rules,
    validate. See dsdoctor/api.py and the README's "Python API"."""
    from .api import analyze as _analyze
    return _analyze(paths, config, **options)
