# UVA for ROS 2. `make demo` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ROS_ENV := source scripts/ros_env.sh

.PHONY: setup demo test test-fast bench clean lerobot-env peer-setup

$(PY):
	python3 -m venv $(VENV)

$(STAMP): requirements.txt models/pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	# gym-pusht pins opencv-python, which would fight opencv-python-headless over cv2
	$(PY) -m pip install -q --no-deps gym-pusht==0.1.8
	$(PY) -m pip install -q --no-deps -e models -e ros2_ws/src/uva_policy -e ros2_ws/src/uva_sim -e ros2_ws/src/uva_bringup
	scripts/build_msgs.sh
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(ROS_ENV) && $(PY) scripts/demo.py --checkpoint models/checkpoints/panda --episodes 10 --out outputs/demo

test: setup
	$(ROS_ENV) && $(PY) -m pytest tests -q -m "not slow" --durations=10

test-all: setup
	$(ROS_ENV) && $(PY) -m pytest tests -q --durations=10

bench: setup
	$(PY) -m uva.cli --threads 2 bench --out outputs/bench.json --overwrite

# LeRobot's own dataset code (uva dataset import/export --lerobot) in a venv of its own: its
# video module imports torchvision, which on PyPI needs PyPI's CUDA torch, not our CPU torch
# (a ~6 GB install). --isolated: take PyPI's builds, not a local CPU wheel of the same version.
LEROBOT_VENV := .lerobot-venv
lerobot-env: $(LEROBOT_VENV)/.installed
$(LEROBOT_VENV)/.installed:
	python3 -m venv $(LEROBOT_VENV)
	$(LEROBOT_VENV)/bin/python -m pip install -q --isolated $(if $(wildcard /etc/ssl/certs/ca-certificates.crt),--cert /etc/ssl/certs/ca-certificates.crt) torch==2.13.0 torchvision==0.28.0 lerobot-dataset==0.4.4
	touch $@

# LeRobot's Diffusion Policy as a peer of UVA (experiments/lerobot_peer): lerobot 0.3.2 (the
# newest whose pins this Python 3.11 venv meets) with torch 2.14.1 + torchvision 0.29.1, our
# `uva` package editable for its envs, replay buffers and evaluator. About 7 GB (a CUDA build of
# torch that also runs on the CPU).
PEER_VENV := .venv-lerobot
peer-setup: $(PEER_VENV)/.installed
$(PEER_VENV)/.installed: experiments/lerobot_peer/requirements.txt models/pyproject.toml
	python3 -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEER_VENV)/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PEER_VENV)/bin/python -m pip install -q -r experiments/lerobot_peer/requirements.txt
	# gym-pusht pins opencv-python, which would fight opencv-python-headless over cv2
	$(PEER_VENV)/bin/python -m pip install -q --no-deps gym-pusht==0.1.8
	$(PEER_VENV)/bin/python -m pip install -q --no-deps -e models
	touch $@

clean:
	rm -rf build outputs
