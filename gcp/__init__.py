"""GCP knowledge: the GPU machine catalog for nodes placed in GCP sites (no API calls)."""
