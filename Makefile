# The two commands a newcomer runs: `make demo` (the main job) and `make test` (the test suite).
# Both create or reuse the virtual environment in $(VENV) and install what they need into it.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# cpu: onnxruntime; on the robot use EXTRAS=robot,test (onnxruntime-gpu + pyrealsense2). Never both.
# metaworld: the optional second benchmark family; realsense: pyrealsense2 (needs apt libusb-1.0-0);
# both installed here so their tests run.
EXTRAS ?= cpu,test,metaworld,realsense
comma := ,
STAMP := $(VENV)/.installed-$(TORCH_VERSION)-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): setup.py setup.cfg package.xml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(VENV)/bin/pip install --disable-pip-version-check -q torch==$(TORCH_VERSION)
	$(VENV)/bin/pip install --disable-pip-version-check -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(VENV)/bin/dbp demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf outputs ros2_ws/build ros2_ws/install ros2_ws/log
