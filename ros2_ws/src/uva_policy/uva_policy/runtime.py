"""Process entry point shared by the UVA nodes: init, spin, clean shutdown on Ctrl-C/SIGINT; a
node whose parameters are invalid (parameters.ParameterError) exits with status 2."""
from __future__ import annotations

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
