"""The environment and the hardware as part AU provoked them: an op build's folder that cannot be made, the
compiler's words after torch 2.13's 'Error building extension' head, NumPy 2 refusing a module built for 1.x,
runpy's one-line missing module, a text codec, Xid 154, the host's uncorrected memory errors, and an Xid of
another job's process. Text in, events and findings out."""
from __future__ import annotations

from tests.diagnose_text import events, findings, top

SITE = "/venv/lib/python3.11/site-packages"
EXT_DIR_TB = (
    "Traceback (most recent call last):\n"
    f'  File "{SITE}/torch/utils/cpp_extension.py", line 2827, in _get_build_directory\n'
    "    os.makedirs(build_directory, exist_ok=True)\n"
    '  File "<frozen os>", line 225, in makedirs\n'
    "{err}\n\n"
    "The above exception was the direct cause of the following exception:\n\n"
    "Traceback (most recent call last):\n"
    f'  File "{SITE}/deepspeed/ops/adam/cpu_adam.py", line 95, in __init__\n'
    "RuntimeError: DeepSpeedCPUAdam requires the cpu_adam op, which failed to build/load.\n")


def test_ext_dir_refused_is_the_build_folder_not_the_config():
    for err, reason in (("OSError: [Errno 30] Read-only file system: '/mnt/ro/cpu_adam'", "Read-only file system"),
                        ("NotADirectoryError: [Errno 20] Not a directory: '/tmp/x/cpu_adam'", "Not a directory"),
                        ("PermissionError: [Errno 13] Permission denied: '/shared/ext/cpu_adam'", "Permission denied")):
        (ev,) = events(EXT_DIR_TB.replace("{err}", err), "env_error")
        assert (ev.data["error"], ev.data["op"], ev.data["reason"]) == ("ext_dir", "cpu_adam", reason)
        f = top(EXT_DIR_TB.replace("{err}", err))
        assert f.rule == "log-env-ext-dir" and f.fixes[0].env == {"TORCH_EXTENSIONS_DIR": "/tmp/torch_extensions"}


def test_errno_far_from_the_build_folder_frame_is_not_it():
    text = EXT_DIR_TB.replace("{err}", "    pass\n" * 8 + "OSError: [Errno 30] Read-only file system: '/ckpt/global_step1'")
    assert not events(text, "env_error")


BUILD = ("RuntimeError: Error building extension 'cpu_adam': [1/3] c++ -MMD -MF cpu_adam.o.d -DTORCH_EXTENSION_NAME=cpu_adam -c x.cpp\n"
         "FAILED: [code=1] cpu_adam.o \n"
         "{said}\n"
         "ninja: build stopped: subcommand failed.\n")


def test_ninja_output_after_torchs_head_is_quoted():
    for said, fix in (("/tmp/ccX.s: Fatal error: can't write 3888 bytes to section .debug_info of cpu_adam.o: 'No space left on device'",
                       "Build the op where there is disk space"),
                      ("/bin/sh: 1: /usr/local/bin/g++-13: not found", "Point the build at a compiler that exists"),
                      ("/bin/bash: line 1: /usr/local/cuda/bin/nvcc: command not found", "Point the build at a compiler that exists")):
        f = top(BUILD.replace("{said}", said))
        assert f.rule == "log-env-op-build"
        assert f.evidence[0].text == said and f.evidence[1].line == 1      # the compiler's words, then torch's head
        assert f.fixes[0].title == fix


def test_build_head_cut_before_ninjas_stop_still_reported():
    (ev,) = events(BUILD.split("ninja:")[0].replace("{said}", "c++: fatal error: Killed signal terminated program cc1plus"), "env_error")
    assert (ev.data["error"], ev.data["op"], ev.line) == ("op_build", "cpu_adam", 1)


def test_numpy2_abi():
    text = ("A module that was compiled using NumPy 1.x cannot be run in\nNumPy 2.1.3 as it may crash. To support both 1.x and 2.x\n"
            "AttributeError: _ARRAY_API not found\nImportError: numpy.core.multiarray failed to import\n")
    f = top(text)
    assert f.rule == "log-env-numpy-abi" and "numpy<2" in f.fixes[0].advice
    assert top("UserWarning: A NumPy version >=1.22.4 and <2.3.0 is required for this version of SciPy (detected version 2.3.1)\n") is None


def test_runpy_missing_module_on_a_pdsh_node():
    f = top("worker-2: /usr/bin/python3: Error while finding module specification for 'deepspeed.launcher.launch' "
            "(ModuleNotFoundError: No module named 'deepspeed')\n")
    assert f.rule == "env-missing-module" and f.node == "worker-2"


def test_text_encoding():
    assert top("UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9 in position 13: invalid continuation byte\n").rule == \
        "failure-text-encoding"
    f = top("UnicodeDecodeError: 'ascii' codec can't decode byte 0xe2 in position 4101: ordinal not in range(128)\n")
    assert f.fixes[0].env == {"PYTHONUTF8": "1"}


def test_xid154_is_hardware():
    f = top("NVRM: Xid (PCI:0000:ca:00): 154, pid='<unknown>', name=<unknown>, GPU recovery action changed from 0x0 (None) "
            "to 0x1 (GPU Reset Required)\n")
    assert f.rule == "hw-xid-gpu-fault"


def test_host_memory_ue_explains_the_sigbus():
    text = ("EDAC MC1: 1 UE memory read error on CPU_SrcID#1_MC#0_Chan#2_DIMM#0 (channel:2 slot:0 page:0x4e21a3 offset:0x0 grain:32)\n"
            "Memory failure: 0x4e21a3: Sending SIGBUS to python:40118 due to hardware memory corruption\n"
            "[2026-12-07 10:11:40,010] [ERROR] [launch.py:259:sigkill_handler] ['/usr/bin/python', '-u', 'train.py', "
            "'--local_rank=6'] exits with return code = -7\n")
    assert top(text).rule == "hw-host-memory"
    assert top("EDAC MC0: 1 CE memory read error on CPU_SrcID#0_MC#1_Chan#0_DIMM#0 (channel:0 slot:0 page:0x1a0b1)\n") is None


XID31 = ("NVRM: Xid (PCI:0000:e1:00): 31, pid=98811, name=python3, Ch 00000010, intr 00000000. MMU Fault: ENGINE GRAPHICS "
         "GPCCLIENT_T1_3 faulted @ 0x7f1b_c0000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ\n")


def test_app_fault_xid_of_another_process():
    ok = "[2026-12-07 10:40:00,001] [INFO] [launch.py:351:main] Process 61000 exits successfully.\n"
    assert [f.rule for f in findings(ok + XID31)] == ["hw-xid-other-process"]
    assert top(XID31).rule == "hw-xid-app-fault"                                  # no pid of the run known
    assert top(ok.replace("61000", "98811") + XID31).rule == "hw-xid-app-fault"   # the run's own process


SMI = ("|   0  NVIDIA A100-SXM4-80GB          On  |   00000000:07:00.0 Off |                    0 |\n"
       "| N/A   34C    P0             62W /  400W |       4MiB /  81920MiB |      0%      Default |\n"
       "|   2  NVIDIA A100-SXM4-80GB          On  |   00000000:47:00.0 Off |                    0 |\n"
       "|ERR!  ERR!   ERR!              ERR! / ERR! |       0MiB /  81920MiB |    ERR!      Default |\n")


def test_nvidia_smi_err_names_the_gpu_of_the_row_above():
    (ev,) = events(SMI, "hardware")
    assert (ev.data["error"], ev.data["gpu"], ev.data["pci"]) == ("smi_err", 2, "00000000:47:00.0")
    assert top(SMI).rule == "hw-smi-err"
    assert top(SMI.split("|   2")[0]) is None                  # N/A fields are no error


def test_fell_off_bus_explains_what_nvidia_smi_then_says():
    # nvidia-smi that cannot open the GPU at all says what the kernel's 'fallen off the bus' says (smi_device_lost)
    handle = "Unable to determine the device handle for GPU0000:41:00.0: Unknown Error\n"
    assert [f.rule for f in findings(handle)][:1] == ["hw-fell-off-bus"]
    assert [f.rule for f in findings(handle + "NVRM: GPU 0000:41:00.0: GPU has fallen off the bus.\n")][:1] == \
        ["hw-fell-off-bus"]
    # its table's ERR! fields beside the kernel's line: the kernel's says why
    text = SMI + "NVRM: GPU 0000:47:00.0: GPU has fallen off the bus.\n"
    assert [f.rule for f in findings(text)][:2] == ["hw-fell-off-bus", "hw-smi-err"]
