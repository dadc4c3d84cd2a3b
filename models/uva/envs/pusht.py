"""PushT (PyPI gym-pusht) with pixel observations, and a privileged-state scripted expert.

The expert re-plans every step: it scores candidate push points along the T's outline by how much
a push there reduces the remaining position + angle error to the goal, walks around an inflated
outline of the T to the chosen point, and pushes with a depth proportional to the remaining error.
"""
from __future__ import annotations

import gymnasium as gym
import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
import numpy as np
import shapely.geometry as sg
from shapely import affinity

from .base import Observation, StepResult

AGENT_RADIUS = 15.0
# The T's outline in the block's body frame (gym-pusht's add_tee with scale 30).
T_OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30),
                      (-60, 30)], dtype=np.float64)
T_COM = np.array([0.0, 45.0])  # mean of the two rectangles' centres of gravity


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return v @ np.array([[c, s], [-s, c]])


def _wrap(angle: float) -> float:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _candidate_contacts(spacing: float = 10.0):
    """Points along the outline (body frame) with their outward normals."""
    points, normals = [], []
    n = len(T_OUTLINE)
    signed_area = sum(T_OUTLINE[i, 0] * T_OUTLINE[(i + 1) % n, 1]
                      - T_OUTLINE[(i + 1) % n, 0] * T_OUTLINE[i, 1] for i in range(n))
    for i in range(n):
        a, b = T_OUTLINE[i], T_OUTLINE[(i + 1) % n]
        edge = b - a
        length = np.linalg.norm(edge)
        normal = np.array([edge[1], -edge[0]]) / length
        if signed_area < 0:
            normal = -normal
        for s in np.arange(spacing / 2, length - spacing / 4, spacing):
            points.append(a + edge * s / length)
            normals.append(normal)
    return np.array(points), np.array(normals)


CONTACTS, NORMALS = _candidate_contacts()


class PushTExpert:
    """Scripted expert using the simulator's block pose (privileged state)."""

    def __init__(self, max_step: float = 25.0, switch_margin: float = 10.0):
        self.max_step = max_step
        self.switch_margin = switch_margin
        self.current = None  # index of the contact being pushed

    def reset(self) -> None:
        self.current = None

    def _score(self, pos, angle, goal):
        com = pos + _rotate(T_COM, angle)
        goal_com = goal[:2] + _rotate(T_COM, goal[2])
        e_pos = goal_com - com
        e_ang = _wrap(goal[2] - angle)
        contacts = pos + _rotate(CONTACTS, angle)
        normals = _rotate(NORMALS, angle)
        push = -normals
        lever = contacts - com
        torque = lever[:, 0] * push[:, 1] - lever[:, 1] * push[:, 0]
        gain = push @ e_pos + e_ang * torque  # translation gain + rotation gain (px units)
        return gain, contacts, normals, np.hypot(*e_pos) + 60 * abs(e_ang)

    def act(self, agent: np.ndarray, block_pose: np.ndarray, goal: np.ndarray) -> np.ndarray:
        pos, angle = np.asarray(block_pose[:2], float), float(block_pose[2])
        agent = np.asarray(agent, float)
        score, contacts, normals, error = self._score(pos, angle, np.asarray(goal, float))
        best = int(np.argmax(score))
        if self.current is None or score[best] > score[self.current] + self.switch_margin:
            self.current = best
        c, n = contacts[self.current], normals[self.current]
        approach = c + n * (AGENT_RADIUS + 4)
        if np.linalg.norm(agent - approach) < 8.0:
            depth = np.clip(0.25 * error, 4.0, self.max_step)
            target = agent - n * depth
        else:
            target = self._navigate(agent, approach, pos, angle)
        step = target - agent
        dist = np.linalg.norm(step)
        if dist > self.max_step:
            target = agent + step / dist * self.max_step
        return np.clip(target, 0.0, 512.0)

    @staticmethod
    def _navigate(agent, approach, pos, angle):
        """Go straight if clear, else walk along the inflated outline of the T."""
        poly = sg.Polygon(T_OUTLINE)
        poly = affinity.rotate(poly, angle, origin=(0, 0), use_radians=True)
        poly = affinity.translate(poly, *pos)
        blocked = poly.buffer(AGENT_RADIUS + 1)
        if not sg.LineString([agent, approach]).intersects(blocked):
            return approach
        ring = poly.buffer(AGENT_RADIUS + 10).exterior
        s_agent, s_goal = ring.project(sg.Point(agent)), ring.project(sg.Point(approach))
        length = ring.length
        forward = (s_goal - s_agent) % length
        direction = 1.0 if forward < length / 2 else -1.0
        waypoint = ring.interpolate((s_agent + direction * 30.0) % length)
        return np.array([waypoint.x, waypoint.y])


class PushTEnv:
    """gym-pusht behind the project's env interface: obs = image + agent position."""

    name = "pusht"
    action_dim = 2
    proprio_dim = 2
    max_steps = 300
    control_hz = 10.0

    def __init__(self, render_size: int = 96):
        self.env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos",
                            observation_width=render_size, observation_height=render_size)
        self.expert = PushTExpert()
        self.score = 0.0

    @property
    def unwrapped(self):
        return self.env.unwrapped

    def _obs(self, raw) -> Observation:
        return Observation(image=raw["pixels"], state=np.asarray(raw["agent_pos"], np.float64))

    def reset(self, seed: int) -> Observation:
        raw, _ = self.env.reset(seed=seed)
        self.expert.reset()
        self.score = 0.0
        return self._obs(raw)

    def step(self, action) -> StepResult:
        action = np.clip(np.asarray(action, dtype=np.float64), 0.0, 512.0)
        raw, reward, terminated, _, info = self.env.step(action)
        self.score = max(self.score, float(reward))  # per-episode max of clip(coverage/0.95)
        return StepResult(self._obs(raw), float(reward), bool(terminated), bool(info["is_success"]))

    def expert_action(self) -> np.ndarray:
        u = self.unwrapped
        return self.expert.act(np.array(u.agent.position),
                               np.array([*u.block.position, u.block.angle]), u.goal_pose)

    def random_action(self, rng: np.random.Generator) -> np.ndarray:
        agent = np.array(self.unwrapped.agent.position)
        return np.clip(agent + rng.normal(0, 25, 2), 0, 512)

    def close(self) -> None:
        self.env.close()

