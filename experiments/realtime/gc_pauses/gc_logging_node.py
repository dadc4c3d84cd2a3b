"""The policy node with every garbage collection timed: `python gc_logging_node.py --ros-args ...`
runs `uva_policy.policy_node` unchanged and appends "wall_time generation pause_ms collected"
per collection to $UVA_GC_LOG."""
import gc
import os
import runpy
import sys
import time

log = open(os.environ["UVA_GC_LOG"], "a", buffering=1)
started = [0.0]


def timed(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        log.write(f"{time.time():.4f} {info['generation']} "
                  f"{(time.perf_counter() - started[0]) * 1e3:.3f} {info['collected']}\n")


gc.callbacks.append(timed)
sys.argv = ["policy_node", *sys.argv[1:]]
runpy.run_module("uva_policy.policy_node", run_name="__main__")
