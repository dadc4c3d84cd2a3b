"""The gripper half of a chunk: from the model's finger-joint targets to franka_gripper goals.

The model predicts the finger joint position (0 = closed .. 0.04 m = open per finger) as one
action dimension; the Franka Hand is not a joint the arm controller drives but a separate
action interface (move / grasp). `GripperSwitch` turns the continuous target into discrete
commands with hysteresis, so a target hovering around one threshold does not spam goals:

    opening o = target / open_position        (1 = fully open)
    while open:   o <  close_below  -> send grasp(grasp_width, epsilon, speed, force)
    while closed: o >  open_above   -> send move(open_width, speed)

and nothing else; the initial state is taken from the measured fingers. `GripperClient` sends
the goals over the (uva_msgs copies of the) franka_msgs Move and Grasp actions.
"""
from __future__ import annotations

from rclpy.action import ActionClient
from uva_msgs.action import Grasp, Move
from uva_msgs.msg import GraspEpsilon

OPEN, CLOSED = "open", "closed"


class GripperSwitch:
    def __init__(self, open_position: float, close_below: float = 0.3, open_above: float = 0.7):
        if not 0.0 < close_below < open_above < 1.0:
            raise ValueError("gripper thresholds need 0 < close_below < open_above < 1")
        self.open_position = open_position
        self.close_below, self.open_above = close_below, open_above
        self.state: str | None = None

    def reset(self) -> None:
        self.state = None

    def update(self, target: float, measured: float) -> str | None:
        """The command to send now (OPEN / CLOSED) or None."""
        if self.state is None:
            self.state = OPEN if measured / self.open_position >= 0.5 else CLOSED
        opening = target / self.open_position
        if self.state == OPEN and opening < self.close_below:
            self.state = CLOSED
            return CLOSED
        if self.state == CLOSED and opening > self.open_above:
            self.state = OPEN
            return OPEN
        return None


class GripperClient:
    """Move / grasp goals to the gripper under `namespace` (franka_gripper's /fr3_gripper)."""

    def __init__(self, node, namespace: str, open_width: float, grasp_width: float,
                 epsilon_inner: float, epsilon_outer: float, speed: float, force: float):
        ns = namespace.rstrip("/")
        self.node = node
        self.move = ActionClient(node, Move, f"{ns}/move")
        self.grasp = ActionClient(node, Grasp, f"{ns}/grasp")
        self.open_width, self.grasp_width = open_width, grasp_width
        self.epsilon = GraspEpsilon(inner=epsilon_inner, outer=epsilon_outer)
        self.speed, self.force = speed, force
        self.goals_sent = 0

    def send(self, command: str) -> str:
        """Send the goal for `command`; returns "" or why it could not be sent."""
        client = self.grasp if command == CLOSED else self.move
        if not client.server_is_ready():
            return f"gripper action server {client._action_name} not available"
        if command == CLOSED:
            goal = Grasp.Goal(width=self.grasp_width, epsilon=self.epsilon, speed=self.speed,
                              force=self.force)
        else:
            goal = Move.Goal(width=self.open_width, speed=self.speed)
        client.send_goal_async(goal)
        self.goals_sent += 1
        return ""

    def destroy(self) -> None:
        self.move.destroy()
        self.grasp.destroy()
