"""What a scheduler says about a job that ended (sources/formats/job_status.py). The scontrol records are
a real local Slurm 22.05's (fixtures lead16_slurm_scontrol_*); systemd's are this machine's systemd 252
format strings; sacct's and kubectl's layouts are cited in the module."""
from __future__ import annotations

import pytest

from dsdoctor.pipeline import diagnose
from dsdoctor.sources.logs import events_from_text

SCONTROL = ("JobId=4 JobName=train.sh\n   UserId=root(0) GroupId=root(0) MCS_label=N/A\n"
            "   JobState={state} Reason={reason} Dependency=(null)\n"
            "   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode={code}\n"
            "   RunTime=00:00:00 TimeLimit=00:30:00 TimeMin=N/A\n")
SACCT = ("JobID           JobName  Partition    Account  AllocCPUS      State ExitCode \n"
         "------------ ---------- ---------- ---------- ---------- ---------- -------- \n"
         "4242           train.sh        gpu       acct         16 {state:>10} {code:>8} \n"
         "4242.batch        batch                  acct         16 {state:>10} {code:>8} \n")
SYSTEMD = "Dec 06 10:00:00 gpu7 systemd[1]: train.service: Main process {what}\n"
K8S = ("Containers:\n  trainer:\n    State:          Terminated\n      Reason:       {reason}\n"
       "      Exit Code:    {code}\n      Started:      Fri, 06 Dec 2026 22:00:00 +0000\n")


def problems(text: str):
    return [f for f in diagnose(events_from_text(text, "job.txt")) if f.severity != "info"]


@pytest.mark.parametrize("text,rule", [
    (SCONTROL.format(state="FAILED", reason="NonZeroExitCode", code="1:0"), "unexplained-failure"),
    (SCONTROL.format(state="FAILED", reason="NonZeroExitCode", code="137:0"), "host-oom-killed"),
    (SCONTROL.format(state="FAILED", reason="NonZeroExitCode", code="139:0"), "failure-crash-signal"),
    (SCONTROL.format(state="TIMEOUT", reason="TimeLimit", code="0:15"), "failure-stopped-from-outside"),
    (SCONTROL.format(state="OUT_OF_MEMORY", reason="OutOfMemory", code="0:125"), "host-oom-killed-cgroup"),
    (SACCT.format(state="OUT_OF_ME+", code="0:125"), "host-oom-killed-cgroup"),
    (SACCT.format(state="FAILED", code="1:0"), "unexplained-failure"),
    (SACCT.format(state="TIMEOUT", code="0:0"), "failure-stopped-from-outside"),
    (K8S.format(reason="Error", code=139), "failure-crash-signal"),
    (K8S.format(reason="Error", code=1), "unexplained-failure"),
    (SYSTEMD.format(what="exited, code=killed, status=9/KILL"), "host-oom-killed"),
    (SYSTEMD.format(what="exited, code=dumped, status=11/SEGV"), "failure-crash-signal"),
    (SYSTEMD.format(what="exited, code=exited, status=1/FAILURE"), "unexplained-failure"),
    ("train.service: A process of this unit has been killed by the OOM killer.\n"
     "train.service: Failed with result 'oom-kill'.\n", "host-oom-killed-cgroup"),
])
def test_a_schedulers_record_of_a_failed_job_is_a_failure(text, rule):
    fs = problems(text)
    assert fs and fs[0].rule == rule, [f.rule for f in fs]


@pytest.mark.parametrize("text", [
    SCONTROL.format(state="COMPLETED", reason="None", code="0:0"),
    SCONTROL.format(state="RUNNING", reason="None", code="0:0"),
    SACCT.format(state="COMPLETED", code="0:0"),
    K8S.format(reason="Completed", code=0),
    SYSTEMD.format(what="exited, code=exited, status=0/SUCCESS"),
    "    State:          Running\n      Started:      Fri, 06 Dec 2026 22:00:00 +0000\n      Exit Code:    1\n",
    "step 10 loss 2.0\nExitCode=1:0 is what a failed job shows\nstep 11 loss 1.9\n",
])
def test_a_schedulers_record_of_a_job_that_did_not_fail_says_nothing(text):
    assert not problems(text), [f.rule for f in problems(text)]
