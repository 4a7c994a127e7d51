"""dsdoctor: diagnose DeepSpeed training runs and print the ds_config change that fixes them."""
__version__ = "0.1.0"


def attach(engine, out=None, **options):
    """Watch a running DeepSpeed engine: `handle = dsdoctor.attach(engine)`; see README."""
    from .sources.live.attach import attach as _attach   # torch is imported only here
    return _attach(engine, out=out, **options)
