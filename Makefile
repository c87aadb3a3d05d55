# Two commands for a newcomer on a fresh Debian/Ubuntu machine (as root, or with sudo):
#   make setup   installs everything the program and the whole test suite need
#   make test    runs the whole test suite (unit, policy, scripts, integration)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Debian packages: shellcheck for the scripts, nginx-light to run the dual relay's config;
# the rest builds the throwaway test server.
APT_PACKAGES := shellcheck openssh-client debootstrap systemd-container iproute2 busybox-static \
	util-linux procps psmisc e2fsprogs nginx-light

.PHONY: setup test unit integration bench clean-testhost

setup:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt

# Two workers, a test file each at a time: each runs its own throwaway server, so the
# integration modules overlap (about 8 minutes instead of 15 on 2 vCPUs).
WORKERS ?= 2

test:
	$(VENV)/bin/python -m pytest -n $(WORKERS) --dist loadfile

unit:
	$(VENV)/bin/python -m pytest -m "not integration"

integration:
	$(VENV)/bin/python -m pytest -m integration

bench:
	$(VENV)/bin/python -m pytest -m bench -s

clean-testhost:
	$(VENV)/bin/python -m tests.integration.testhost clean
