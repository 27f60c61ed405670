"""Renderers: pure functions from plain values to text (cloud-init, systemd units, WireGuard configs,
Kubernetes manifests, scripts). Components call them inside ``apply`` only to build strings."""
