"""Renderers: pure functions from plain values to text (cloud-init, systemd units, WireGuard configs,
Kubernetes manifests, scripts). Components call them inside ``apply`` only to build strings.

The scripts and Python helpers that run on VMs are files under ``render/scripts/`` (package data, linted by
``make lint``); renderers fill their values through a header (:mod:`lmrun.render.script_files`)."""
