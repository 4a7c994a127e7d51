"""One reader of torch's memory sizes, shared by the log recognisers and the live hooks."""
from dsdoctor.sources.formats import memory as log_memory
from dsdoctor.live import hooks as live_hooks
from dsdoctor.torch_oom import requested_bytes, size


def _format_size(n: int) -> str:
    """c10/core/Allocator.h: format_size, as torch prints it in an OOM message."""
    if n <= 1024:
        return f"{n} bytes"
    for div, unit in ((1 << 10, "KiB"), (1 << 20, "MiB")):
        if n <= div << 10:
            return f"{n / div:.2f} {unit}"
    return f"{n / (1 << 30):.2f} GiB"


def test_sizes_as_torch_prints_them():
    for n in (512, 1024, 3 << 10, 5 << 20, 2 << 30, 80 << 30):
        assert size(_format_size(n)) == n
    assert size("1.50 KB") == 1536          # not torch's wording: read with the same base
    assert size("nothing") is None and size(None) is None and size("1.2.3 GiB") is None


def test_requested_bytes_cpu_and_cuda():
    assert requested_bytes("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                           "4294967296 bytes. Error code 12") == 4294967296
    assert requested_bytes("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0") == 20 << 20
    assert requested_bytes("CUDA out of memory. Tried to allocate 512 bytes.") == 512
    assert requested_bytes("CUDA error: out of memory") is None


def test_one_parser_for_logs_and_live():
    assert log_memory.size is size and live_hooks.requested_bytes is requested_bytes
