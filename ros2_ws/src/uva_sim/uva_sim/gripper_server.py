"""The simulated Franka Hand's command interface, shaped like franka_gripper's node.

Actions `<ns>/move` (Move: width, speed), `<ns>/grasp` (Grasp: width, epsilon, speed, force),
`<ns>/homing` (Homing) and the service `<ns>/stop` (std_srvs/Trigger), with uva_msgs' copies of
the franka_msgs types (docs/ros_interfaces.md lists what differs). `width` is the distance
between the fingers (0 .. 0.08 m); each finger joint sits at width / 2.

The physics runs in the driver's timer; this module only holds the commanded width (moved
towards the goal at the goal's speed) and the measured one, under a lock, and answers goals from
the action threads by watching the measured width: a move succeeds when the fingers reach the
width, a grasp when they stop inside [width - inner, width + outer]. A newer command or `stop`
aborts the running goal, as on the real hand.
"""
from __future__ import annotations

import threading
import time

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from std_srvs.srv import Trigger
from uva_msgs.action import Grasp, Homing, Move

MAX_WIDTH = 0.08  # m, Franka Hand
STALL_STEPS = 3  # controller steps without motion after the command arrived = fingers stopped


class FingerState:
    """Commanded and measured finger width shared by the physics timer and the action threads."""

    def __init__(self, width: float, max_speed: float):
        self.lock = threading.Lock()
        self.max_speed = max_speed
        self.goal = self.command = self.width = width
        self.speed = 0.1
        self.generation = 0  # bumped by every new command: a running goal sees it is superseded
        self.still_steps = 0

    def set_goal(self, width: float, speed: float) -> int:
        with self.lock:
            self.goal = min(max(width, 0.0), MAX_WIDTH)
            self.speed = min(max(speed, 1e-3), self.max_speed)
            self.still_steps = 0
            self.generation += 1
            return self.generation

    def stop(self) -> None:
        with self.lock:
            self.goal = self.command = self.width
            self.generation += 1

    def step(self, dt: float, measured_width: float) -> float:
        """One controller step: move the command towards the goal at the goal's speed, record the
        measured width; returns the commanded finger joint position (width / 2)."""
        with self.lock:
            delta = self.goal - self.command
            limit = self.speed * dt
            self.command += max(min(delta, limit), -limit)
            moved = abs(measured_width - self.width) > 2e-4
            self.still_steps = 0 if moved or self.command != self.goal else self.still_steps + 1
            self.width = measured_width
            return self.command / 2.0


def _reached(target: float, tolerance: float = 0.005):
    """A move's end: success at the target width, failure if the fingers stop elsewhere."""
    def done(width: float, stalled: bool):
        if abs(width - target) < tolerance:
            return True
        return None if stalled else False
    return done


class GripperServer:
    def __init__(self, node, fingers: FingerState, namespace: str, period_s: float,
                 timeout_s: float = 10.0):
        self.node, self.fingers = node, fingers
        self.period, self.timeout = period_s, timeout_s
        group = ReentrantCallbackGroup()
        ns = namespace.rstrip("/")
        common = dict(goal_callback=lambda _g: GoalResponse.ACCEPT,
                      cancel_callback=lambda _g: CancelResponse.ACCEPT, callback_group=group)
        self.servers = [
            ActionServer(node, Move, f"{ns}/move", self._move, **common),
            ActionServer(node, Grasp, f"{ns}/grasp", self._grasp, **common),
            ActionServer(node, Homing, f"{ns}/homing", self._homing, **common),
        ]
        node.create_service(Trigger, f"{ns}/stop", self._stop, callback_group=group)

    # ------------------------------------------------------------------ goals
    def _move(self, goal_handle):
        g = goal_handle.request
        return self._run(goal_handle, Move, g.width, g.speed, _reached(g.width))

    def _homing(self, goal_handle):
        return self._run(goal_handle, Homing, MAX_WIDTH, self.fingers.max_speed,
                         _reached(MAX_WIDTH))

    def _grasp(self, goal_handle):
        g = goal_handle.request
        lo, hi = g.width - g.epsilon.inner, g.width + g.epsilon.outer

        def done(w, stalled):
            if stalled or abs(w - g.width) < 1e-3:
                return True if lo <= w <= hi else None
            return False
        return self._run(goal_handle, Grasp, g.width, g.speed, done)

    def _run(self, goal_handle, action, width: float, speed: float, done):
        """Command the fingers, then watch them: done(width, stalled) -> True (success),
        None (failed: stopped outside the goal), False (still moving)."""
        generation = self.fingers.set_goal(width, speed)
        end = time.monotonic() + self.timeout
        result = action.Result()
        feedback = action.Feedback()
        while True:
            time.sleep(self.period)
            with self.fingers.lock:
                w, stalled = self.fingers.width, self.fingers.still_steps >= STALL_STEPS
                superseded = self.fingers.generation != generation
            feedback.current_width = float(w)
            goal_handle.publish_feedback(feedback)
            if goal_handle.is_cancel_requested:
                self.fingers.stop()
                goal_handle.canceled()
                result.error = "canceled"
                return result
            if superseded:
                result.error = "preempted by a newer gripper command or stop"
                break
            state = done(w, stalled)
            if state:
                result.success = True
                goal_handle.succeed()
                return result
            if state is None:
                result.error = f"fingers stopped at {w:.4f} m, outside the goal"
                break
            if time.monotonic() > end:
                result.error = f"timed out at {w:.4f} m"
                break
        self.node.get_logger().warning(f"gripper goal failed: {result.error}")
        goal_handle.abort()
        return result

    def _stop(self, _request, response):
        self.fingers.stop()
        response.success, response.message = True, "fingers stopped"
        return response
