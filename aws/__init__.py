"""AWS knowledge: regions, address plan, instance catalog, and the boto3 code behind the CLI.

Nothing here creates Pulumi resources; boto3 is only used by operator commands, never inside `pulumi up`.
"""
