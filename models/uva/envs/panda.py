"""Franka Panda tabletop pick-and-place in pybullet (the shipped `franka_panda/panda.urdf`).

Observation: a fixed camera that sees the arm, the cube and the target pad, plus 7 arm joint
positions and the finger joint position (per finger, 0-0.04 m, as franka_ros2 reports
`fr3_finger_joint1`). Action: absolute joint-position targets (7 arm + finger), the same command a joint trajectory controller on a real Franka takes.
A scripted IK expert picks the cube and places it on the randomly placed target.

Cameras (`cameras=`): "scene" (the fixed view above) and "wrist", mounted on the hand link and
moving with it, looking past the fingers at what they grasp (the Franka/DROID layout). Several
cameras come back as separate streams in `Observation.images`; `image` is the first.
"""
from __future__ import annotations

import numpy as np
import pybullet as pb
import pybullet_data

from .base import Observation, StepResult

ARM_JOINTS = list(range(7))
FINGER_JOINTS = [9, 10]
EE_LINK = 11
HAND_LINK = 8  # panda_hand: the wrist camera is fixed to it
CAMERAS = ("scene", "wrist")
# wrist camera in the hand frame (z points from the hand through the fingertips, the fingers
# slide along y): 6 cm off-axis, looking at a point 15 cm out along the fingers
WRIST_EYE = np.array([0.06, 0.0, 0.0])
WRIST_TARGET = np.array([0.0, 0.0, 0.15])
WRIST_UP = np.array([1.0, 0.0, 0.0])
JOINT_LOWER = np.array([-2.9671, -1.8326, -2.9671, -3.1416, -2.9671, -0.0873, -2.9671, 0.0])
JOINT_UPPER = np.array([2.9671, 1.8326, 2.9671, 0.0, 2.9671, 3.8223, 2.9671, 0.04])
HOME = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785, 0.04])
TABLE_Z = 0.0
CUBE_HALF = 0.025
DOWN = pb.getQuaternionFromEuler([np.pi, 0.0, 0.0])


class PandaEnv:
    name = "panda"
    action_dim = 8
    proprio_dim = 8
    max_steps = 120
    control_hz = 10.0
    substeps = 24  # 240 Hz physics
    camera_names = CAMERAS  # the cameras it can render

    def __init__(self, render_size: int = 96, cameras: tuple[str, ...] | list[str] = ("scene",)):
        unknown = [c for c in cameras if c not in CAMERAS]
        if not cameras or unknown or len(set(cameras)) != len(cameras):
            raise ValueError(f"panda cameras must be distinct names from {CAMERAS}, got "
                             f"{list(cameras)}")
        self.render_size = render_size
        self.cameras = tuple(cameras)
        self.client = pb.connect(pb.DIRECT)
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        self.view = pb.computeViewMatrix([0.95, 0.0, 0.6], [0.4, 0.0, 0.0], [0, 0, 1],
                                         physicsClientId=self.client)
        self.proj = pb.computeProjectionMatrixFOV(50, 1.0, 0.05, 3.0, physicsClientId=self.client)
        self.wrist_proj = pb.computeProjectionMatrixFOV(75, 1.0, 0.01, 2.0,
                                                        physicsClientId=self.client)
        self.rng = np.random.default_rng(0)
        self.score = 0.0
        self._plan: list = []
        self._segment = None

    # ------------------------------------------------------------------ world
    def reset(self, seed: int) -> Observation:
        c = self.client
        self.rng = np.random.default_rng(seed)
        pb.resetSimulation(physicsClientId=c)
        pb.setGravity(0, 0, -9.81, physicsClientId=c)
        pb.loadURDF("plane.urdf", physicsClientId=c)
        self.robot = pb.loadURDF("franka_panda/panda.urdf", useFixedBase=True, physicsClientId=c)
        for j, q in zip(ARM_JOINTS, HOME[:7]):
            pb.resetJointState(self.robot, j, q, physicsClientId=c)
        for j in FINGER_JOINTS:
            pb.resetJointState(self.robot, j, HOME[7], physicsClientId=c)
        cube_xy = np.array([self.rng.uniform(0.4, 0.6), self.rng.uniform(-0.2, 0.2)])
        while True:
            target_xy = np.array([self.rng.uniform(0.4, 0.6), self.rng.uniform(-0.2, 0.2)])
            if np.linalg.norm(target_xy - cube_xy) > 0.12:
                break
        self.target_xy = target_xy
        self.cube = pb.loadURDF("cube_small.urdf", [*cube_xy, CUBE_HALF],
                                pb.getQuaternionFromEuler([0, 0, self.rng.uniform(-0.6, 0.6)]),
                                physicsClientId=c)
        pb.changeVisualShape(self.cube, -1, rgbaColor=[0.9, 0.15, 0.1, 1], physicsClientId=c)
        pb.changeDynamics(self.cube, -1, lateralFriction=1.5, physicsClientId=c)
        pad = pb.createVisualShape(pb.GEOM_CYLINDER, radius=0.045, length=0.002,
                                   rgbaColor=[0.1, 0.8, 0.2, 1], physicsClientId=c)
        pb.createMultiBody(0, baseVisualShapeIndex=pad, basePosition=[*target_xy, 0.001],
                           physicsClientId=c)
        self._command = HOME.copy()
        self._apply(HOME)
        self.steps = 0
        self.score = 0.0
        self._plan = self._make_plan(cube_xy)
        self._segment = None
        return self.observe()

    def joint_state(self) -> np.ndarray:
        states = pb.getJointStates(self.robot, ARM_JOINTS + FINGER_JOINTS,
                                   physicsClientId=self.client)
        q = np.array([s[0] for s in states])
        return q[:8]  # 7 arm joints + finger joint 1 (the fingers are mirrored)

    def wrist_pose(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World eye, target and up vector of the wrist camera, from the hand link's pose."""
        pos, quat = pb.getLinkState(self.robot, HAND_LINK, computeForwardKinematics=True,
                                    physicsClientId=self.client)[4:6]
        rot = np.array(pb.getMatrixFromQuaternion(quat)).reshape(3, 3)
        pos = np.array(pos)
        return pos + rot @ WRIST_EYE, pos + rot @ WRIST_TARGET, rot @ WRIST_UP

    def render(self, camera: str = "scene") -> np.ndarray:
        if camera == "wrist":
            eye, target, up = self.wrist_pose()
            view, proj = pb.computeViewMatrix(eye.tolist(), target.tolist(), up.tolist(),
                                              physicsClientId=self.client), self.wrist_proj
        else:
            view, proj = self.view, self.proj
        _, _, rgba, _, _ = pb.getCameraImage(
            self.render_size, self.render_size, view, proj,
            renderer=pb.ER_TINY_RENDERER, physicsClientId=self.client)
        return np.asarray(rgba, dtype=np.uint8).reshape(self.render_size, self.render_size, 4)[..., :3].copy()

    def observe(self) -> Observation:
        if self.cameras == ("scene",):
            return Observation(image=self.render(), state=self.joint_state())
        images = {c: self.render(c) for c in self.cameras}
        return Observation(image=images[self.cameras[0]], state=self.joint_state(), images=images)

    def cube_position(self) -> np.ndarray:
        return np.array(pb.getBasePositionAndOrientation(self.cube, physicsClientId=self.client)[0])

    def is_success(self) -> bool:
        p = self.cube_position()
        return bool(np.linalg.norm(p[:2] - self.target_xy) < 0.04 and p[2] < CUBE_HALF + 0.01)

    def _apply(self, target: np.ndarray) -> None:
        c = self.client
        pb.setJointMotorControlArray(self.robot, ARM_JOINTS, pb.POSITION_CONTROL,
                                     targetPositions=target[:7], forces=[87] * 4 + [12] * 3,
                                     physicsClientId=c)
        pb.setJointMotorControlArray(self.robot, FINGER_JOINTS, pb.POSITION_CONTROL,
                                     targetPositions=[target[7]] * 2, forces=[40, 40],
                                     physicsClientId=c)

    def step(self, action) -> StepResult:
        target = np.clip(np.asarray(action, dtype=np.float64), JOINT_LOWER, JOINT_UPPER)
        self._command = target
        self._apply(target)
        for _ in range(self.substeps):
            pb.stepSimulation(physicsClientId=self.client)
        self.steps += 1
        success = self.is_success() and self.joint_state()[7] > 0.025  # released on the pad
        self.score = max(self.score, float(success))
        return StepResult(self.observe(), float(success), success, success)

    # ------------------------------------------------------------------ expert
    def _make_plan(self, cube_xy):
        """Waypoints (ee position, gripper opening, steps to get there)."""
        above, grasp_z, carry_z = 0.18, 0.015, 0.15
        cx, cy = cube_xy
        tx, ty = self.target_xy
        return [
            (np.array([cx, cy, above]), 0.04, 12),
            (np.array([cx, cy, grasp_z]), 0.04, 10),
            (np.array([cx, cy, grasp_z]), 0.0, 5),
            (np.array([cx, cy, carry_z]), 0.0, 10),
            (np.array([tx, ty, carry_z]), 0.0, 14),
            (np.array([tx, ty, grasp_z + 0.02]), 0.0, 8),
            (np.array([tx, ty, grasp_z + 0.02]), 0.04, 5),
            (np.array([tx, ty, above]), 0.04, 8),
        ]

    def expert_action(self) -> np.ndarray:
        """Towards the next waypoint: its joint configuration (IK) reached along a minimum-jerk
        profile in joint space, each leg starting and ending at rest, so the joint targets stay
        within the accelerations a Panda can command (docs/node-safety.md)."""
        if not self._plan:
            return self._command.copy()
        goal, grip, n = self._plan[0]
        if self._segment is None:  # a new leg: its ends and its steps
            self._segment = (self.joint_state()[:7], self._ik(goal), n)
        start, end, total = self._segment
        tau = (total - n + 1) / total
        q = start + (end - start) * (10 * tau**3 - 15 * tau**4 + 6 * tau**5)
        if n <= 1:
            self._plan.pop(0)
            self._segment = None
        else:
            self._plan[0] = (goal, grip, n - 1)
        return np.clip(np.array([*q, grip]), JOINT_LOWER, JOINT_UPPER)

    def _ik(self, position: np.ndarray) -> np.ndarray:
        q = pb.calculateInverseKinematics(
            self.robot, EE_LINK, np.asarray(position).tolist(), DOWN,
            lowerLimits=JOINT_LOWER[:7].tolist(), upperLimits=JOINT_UPPER[:7].tolist(),
            jointRanges=(JOINT_UPPER[:7] - JOINT_LOWER[:7]).tolist(), restPoses=HOME[:7].tolist(),
            maxNumIterations=200, residualThreshold=1e-5, physicsClientId=self.client)
        return np.array(q[:7])

    def random_action(self, rng: np.random.Generator) -> np.ndarray:
        return np.clip(self.joint_state() + rng.normal(0, 0.1, 8), JOINT_LOWER, JOINT_UPPER)

    def close(self) -> None:
        if self.client is not None and pb.isConnected(self.client):
            pb.disconnect(self.client)
