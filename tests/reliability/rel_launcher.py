"""A pre-imported process that forks pipeline runs on request (for kill and race tests).

Importing numpy, zarr, pydantic and strax_decl takes ~2 s here; the kill test needs dozens of
runs of ~1 s each. So this process imports everything once, starts no thread, and for each
request forks a child that runs one job and ``_exit``s. The test talks to it over stdin/stdout,
one JSON document per line:

- ``{"op": "spawn", "job": {...}}`` -> ``{"pid": <child pid>}`` (the child runs ``run_job``)
- ``{"op": "reap", "pid": <pid>}``  -> ``{"pid": <pid>, "status": <exit code or -signal>}``

The test kills children itself (``os.kill(pid, SIGKILL)``) and then reaps them here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import numpy.random

# after setuid cannot read /root/.pyenv to import it later
import strax_decl as sd
import strax_decl.engine.serial
import strax_decl.engine.threaded
import strax_decl.progress
from strax_decl.testing import CHUNK_DEPENDENT_PLUGINS, TOY_PLUGINS
from strax_storage import open_store

RUN_ID = "run_1"


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.waits = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("waiting for data set"):
            self.waits += 1


def digest(arr: np.ndarray) -> str:
    return hashlib.sha256(str(arr.dtype.descr).encode() + arr.tobytes()).hexdigest()


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    if job.get("fsize") is not None:  # SIGXFSZ is ignored by Python: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (job["fsize"], job["fsize"]))
    if job.get("uid") is not None:
        # After setuid the child cannot read the Python installation (/root is private), so
        # everything a run imports lazily is imported first, by one run in memory.
        warm = sd.Context(storage="memory://", plugins=TOY_PLUGINS, config=job.get("config", {}))
        warm.make(RUN_ID, job["targets"])
        for t in job["targets"]:
            digest(warm.get_array(RUN_ID, t))
        os.setgid(job["uid"])
        os.setuid(job["uid"])
    start_at = job.get("start_at")
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    counter = _Counter()
    logger = logging.getLogger("strax_decl.session")
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    t0 = time.time()
    store = open_store(
        job["store"], rows_per_chunk=job.get("rows_per_chunk"), readonly=job.get("readonly", False)
    )
    plugins = CHUNK_DEPENDENT_PLUGINS if job.get("chunk_dependent") else TOY_PLUGINS
    ctx = sd.Context(
        storage=store,
        plugins=plugins,
        config=job.get("config", {}),
        on_conflict=job.get("on_conflict", "wait"),
    )
    targets = job["targets"]
    ctx.make(RUN_ID, targets)
    plan = ctx.last_plan
    assert plan is not None
    result: dict[str, Any] = {
        "ok": True,
        "computed": plan.to_compute,
        "saved": plan.to_save,
        "loaded": plan.to_load,
        "waits": counter.waits,
        "seconds": time.time() - t0,
    }
    if job.get("digest"):
        result["digest"] = {t: digest(ctx.get_array(RUN_ID, t)) for t in targets}
    return result


def child(job: dict[str, Any]) -> None:
    try:
        result = run_job(job)
    except BaseException as e:
        result = {
            "ok": False,
            "type": type(e).__name__,
            "error": str(e),
            "errno": getattr(e, "errno", None),
            "traceback": traceback.format_exc(),
        }
    out = job.get("result")
    if out:
        with open(out + ".part", "w") as f:
            json.dump(result, f)
        os.replace(out + ".part", out)
    os._exit(0 if result["ok"] else 1)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "spawn":
            assert threading.active_count() == 1, "forking with threads is unsafe"
            pid = os.fork()
            if pid == 0:
                child(request["job"])  # never returns
            reply: dict[str, Any] = {"pid": pid}
        elif op == "reap":
            _, status = os.waitpid(request["pid"], 0)
            reply = {"pid": request["pid"], "status": os.waitstatus_to_exitcode(status)}
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
