"""Restarts under torchrun (``--max-restarts``): what a job needs so that a restarted attempt can
reconnect, and what a worker can tell about the launch it belongs to."""

from __future__ import annotations

import os
from typing import Mapping, Optional

# torch 2.13's torchrun hands its workers its rendezvous TCP store, and keeps it over restarts: the
# restarted workers find the failed attempt's gloo addresses there and cannot connect ("connectFullMesh
# failed ... Connection refused"), or hang in init_process_group past its timeout. Measured with
# --max-restarts 1 and one worker dying: on one node 3 of 7 jobs failed or hung, on two nodes 4 of 4.
# With this variable set in torchrun's environment every attempt gets a fresh store: 6 of 6 and 4 of 4
# restarted jobs finished.
SHARED_STORE_VARIABLE = "TORCH_DISABLE_SHARE_RDZV_TCP_STORE"


def restartable_environment(environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """A copy of `environ` (default: this process's) in which torchrun's ``--max-restarts`` can
    reconnect a job: the environment for the torchrun command on every node."""
    environment = dict(os.environ if environ is None else environ)
    environment[SHARED_STORE_VARIABLE] = "1"
    return environment


def allowed_restarts(environ: Optional[Mapping[str, str]] = None) -> int:
    """How many times torchrun may restart this worker's job (0 outside torchrun)."""
    environ = os.environ if environ is None else environ
    try:
        return max(int(environ.get("TORCHELASTIC_MAX_RESTARTS", "0")), 0)
    except ValueError:
        return 0


def restart_attempt(environ: Optional[Mapping[str, str]] = None) -> int:
    """How many times torchrun restarted this worker's group on this node (0: the first attempt)."""
    environ = os.environ if environ is None else environ
    text = environ.get("TORCHELASTIC_RESTART_COUNT", "0").strip()
    return int(text) if text.isdigit() else 0


def restart_problem(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """Inside a torchrun worker: why a restart of this job could not reconnect, or None.

    The trouble is torchrun's shared rendezvous store in a job that allows restarts; the worker
    sees both in TORCHELASTIC_USE_AGENT_STORE and TORCHELASTIC_MAX_RESTARTS.
    """
    environ = os.environ if environ is None else environ
    restarts = allowed_restarts(environ)
    if restarts < 1 or environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    return (f"torchrun --max-restarts {restarts} may not reconnect this job after a failure: "
            f"start torchrun with {SHARED_STORE_VARIABLE}=1 (on every node)")
