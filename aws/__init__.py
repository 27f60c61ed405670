"""AWS knowledge: regions, address plan, instance catalog, the boto3 code behind the CLI, and SSM Parameter Store
as its VMs' secret store (``secret_store``, a renderer's input).

Nothing here creates Pulumi resources; boto3 is only used by operator commands, never inside `pulumi up`.
"""

NAME = "aws"
"""This cloud's name in stack config (``cloud`` of a node); the hub cloud of :mod:`lmrun.clouds`."""
