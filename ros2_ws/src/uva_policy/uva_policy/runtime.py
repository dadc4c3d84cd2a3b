"""Process entry point shared by the UVA nodes: init, spin, clean shutdown on Ctrl-C/SIGINT; a
node whose parameters are invalid (parameters.ParameterError) exits with status 2. And
`freeze_heap`, which a node calls once it is configured."""
from __future__ import annotations

import gc
import time

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor


def run_node(make_node, args=None, threads: int = 1, on_shutdown=None) -> None:
    from .parameters import ParameterError
    rclpy.init(args=args)
    try:
        node = make_node()
    except ParameterError as e:  # refuse to run: no publisher exists yet, nothing was sent
        rclpy.logging.get_logger("uva").fatal(f"invalid parameters, not starting: {e}")
        rclpy.try_shutdown()
        raise SystemExit(2)
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if on_shutdown is not None:
            on_shutdown(node)
        node.destroy_node()
        rclpy.try_shutdown()


def freeze_heap() -> float:
    """Collect once, then move every object alive into the permanent generation (gc.freeze), so
    later collections never traverse torch, rclpy and the loaded checkpoint again. Without it a
    full collection of a configured node's ~400 000 objects stops every thread for 250-450 ms
    (measured in the policy node: experiments/realtime/gc_pauses); with it, ~0 ms. Frozen
    objects are still freed by reference counting; what a previous configure froze is unfrozen
    first, so a reconfigured node's old checkpoint is collected here. Returns the seconds spent."""
    t0 = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0
