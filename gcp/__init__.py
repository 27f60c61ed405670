"""GCP, a site cloud: GCP sites (network, gateway, routes, secrets) and GPU nodes in them.

Its roles (see :mod:`lmrun.clouds`): ``rules`` (spec), ``placement`` (plan), ``secret_store`` (render: Secret
Manager as its VMs' secret store), ``site`` (components); its knowledge: ``catalog`` (GPU machines and
prices)."""

NAME = "gcp"
"""This cloud's name in stack config (``kind`` of a site, ``cloud`` of a node)."""
