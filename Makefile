# UVA for ROS 2. `make demo` and `make test` each set themselves up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ROS_ENV := source scripts/ros_env.sh

.PHONY: setup demo test test-fast bench clean

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

clean:
	rm -rf build outputs
