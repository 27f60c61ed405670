"""EC2 instance knowledge the plan needs before any API call: the GPU catalog (``catalog``)."""
