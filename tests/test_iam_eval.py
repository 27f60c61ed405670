"""The IAM evaluator (lmrun.verify.iam) on the examples of the IAM User Guide: explicit deny wins over allow,
NotResource (the HRPayroll example, and the Allow + NotResource it warns against), NotAction, wildcards in the
middle of ARNs (the Resource page's S3 examples), case rules, and what it does with what it cannot know."""

from __future__ import annotations

from typing import Any

import pytest

from lmrun.verify.iam import Policy, PolicyDocumentError, action_matches, evaluate, evaluate_any, parse_policy

ACCOUNT = "123456789012"


def _policy(*statements: dict[str, Any], source: str = "test-policy") -> Policy:
    policy = Policy.of({"Version": "2012-10-17", "Statement": list(statements)}, source)
    assert policy.unknown is None, policy.unknown
    return policy


def test_an_explicit_deny_wins_over_any_allow() -> None:
    """ "An explicit deny in any of these policies overrides the allow" (IAM User Guide, Policy evaluation
    logic): the allow and the deny may sit in different policies."""
    allow_all = _policy({"Sid": "All", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}, source="a")
    deny_delete = _policy(
        {"Sid": "NoDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::bucket/*"},
        source="b",
    )
    verdict = evaluate([allow_all, deny_delete], "s3:DeleteObject", "arn:aws:s3:::bucket/report.csv")
    assert verdict.allowed is False and verdict.labels == ("b (NoDelete)",)
    assert evaluate([allow_all, deny_delete], "s3:GetObject", "arn:aws:s3:::bucket/report.csv").labels == ("a (All)",)
    # Neither an allow nor a deny: implicitly denied, and no statement to name.
    implicit = evaluate([deny_delete], "s3:GetObject", "arn:aws:s3:::bucket/report.csv")
    assert implicit.allowed is False and implicit.statements == () and implicit.reason == "no statement allows it"


def test_notresource_with_deny_is_the_hrpayroll_example() -> None:
    """IAM User Guide, NotResource: Deny s3:* on everything but HRBucket/Payroll — "this policy does not grant
    the user access to any resources"; with an allow beside it, only Payroll is reachable."""
    payroll = ["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"]
    deny = _policy({"Effect": "Deny", "Action": "s3:*", "NotResource": payroll})
    inside, outside = "arn:aws:s3:::HRBucket/Payroll/2024.csv", "arn:aws:s3:::HRBucket/Legal/contract.pdf"
    alone = evaluate([deny], "s3:GetObject", inside)
    assert alone.allowed is False and alone.statements == ()  # not denied, but nothing allows it
    allow = _policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, source="allow")
    assert evaluate([allow, deny], "s3:GetObject", inside).allowed is True
    refused = evaluate([allow, deny], "s3:GetObject", outside)
    assert refused.allowed is False and refused.labels == ("test-policy (Statement[0])",)
    # NotResource limits the deny to the actions it names: EC2 is untouched ("only affects Amazon S3 actions").
    assert evaluate([allow, deny], "ec2:DescribeInstances", "*").allowed is False  # the allow is s3:* only
    assert evaluate([deny], "ec2:DescribeInstances", "*").statements == ()


def test_allow_with_notresource_grants_everything_else() -> None:
    """ "You should never use the Allow, Action *, NotResource arn:aws:s3:::HRBucket elements together": it allows
    every action on every resource but that bucket — adding a policy to oneself included."""
    dangerous = _policy({"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:s3:::HRBucket"})
    assert evaluate([dangerous], "iam:PutUserPolicy", f"arn:aws:iam::{ACCOUNT}:user/Bob").allowed is True
    assert evaluate([dangerous], "s3:ListBucket", "arn:aws:s3:::HRBucket").allowed is False


def test_notaction_allows_every_other_action() -> None:
    """IAM User Guide, NotAction: Allow NotAction iam:* on * grants every service but IAM; Deny NotAction iam:*
    refuses everything but IAM."""
    allow = _policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert evaluate([allow], "s3:GetObject", "arn:aws:s3:::b/k").allowed is True
    assert evaluate([allow], "iam:CreateUser", f"arn:aws:iam::{ACCOUNT}:user/x").allowed is False
    deny = _policy({"Effect": "Deny", "NotAction": ["iam:*"], "Resource": "*"}, source="deny")
    everything = _policy({"Effect": "Allow", "Action": "*", "Resource": "*"}, source="all")
    assert evaluate([everything, deny], "s3:GetObject", "arn:aws:s3:::b/k").allowed is False
    assert evaluate([everything, deny], "iam:ListUsers", "*").allowed is True


@pytest.mark.parametrize(
    ("pattern", "resource", "matches"),
    [
        # IAM User Guide, Resource: "*" expands across "/" and ":" anywhere in the ARN.
        ("arn:aws:s3:::amzn-s3-demo-bucket/*/test/*", "arn:aws:s3:::amzn-s3-demo-bucket/1/test/object.jpg", True),
        ("arn:aws:s3:::amzn-s3-demo-bucket/*/test/*", "arn:aws:s3:::amzn-s3-demo-bucket/1/2/test/3/object.jpg", True),
        ("arn:aws:s3:::amzn-s3-demo-bucket/*/test/*", "arn:aws:s3:::amzn-s3-demo-bucket/1/tests/object.jpg", False),
        (f"arn:aws:iam::{ACCOUNT}:user/accounting/*", f"arn:aws:iam::{ACCOUNT}:user/accounting/alice", True),
        ("arn:aws:ssm:*:*:parameter/lmrun/*/k3s/*", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/lmrun/g/k3s/x", True),
        ("arn:aws:ssm:*:*:parameter/lmrun/*/k3s/*", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/lmrun/g/hf/x", False),
        ("arn:aws:ssm:us-east-?:*:parameter/*", f"arn:aws:ssm:us-east-1:{ACCOUNT}:parameter/a", True),
        ("arn:aws:ssm:us-east-?:*:parameter/*", f"arn:aws:ssm:us-east-10:{ACCOUNT}:parameter/a", False),
        # "In the Resource element, the IAM user name is case sensitive."
        (f"arn:aws:iam::{ACCOUNT}:user/Bob", f"arn:aws:iam::{ACCOUNT}:user/bob", False),
        ("*", "anything:at/all", True),
    ],
)
def test_wildcards_anywhere_in_an_arn(pattern: str, resource: str, matches: bool) -> None:
    policy = _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": pattern})
    assert (evaluate([policy], "s3:GetObject", resource).allowed is True) is matches


def test_actions_match_with_wildcards_in_any_case() -> None:
    for action in ("ssm:GetParameter", "ssm:getparameters", "SSM:GetParametersByPath", "ssm:GetParameterHistory"):
        assert action_matches("ssm:GetParameter*", action), action
    assert not action_matches("ssm:GetParameter*", "ssm:PutParameter")
    assert action_matches("ec2messages:*", "ec2messages:GetMessages")
    assert action_matches("ssm:Get?arameter", "ssm:GetParameter") and not action_matches("ssm:Get?arameter", "ssm:Get")


def test_conditions_err_towards_more_access() -> None:
    """Conditions are not evaluated: a conditional Allow counts, a conditional Deny does not."""
    condition = {"Bool": {"aws:MultiFactorAuthPresent": "false"}}
    allow = _policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": condition})
    deny = _policy({"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": condition}, source="deny")
    assert evaluate([allow, deny], "s3:GetObject", "arn:aws:s3:::b/k").allowed is True


def test_what_is_not_known_is_undecided_unless_a_known_deny_settles_it() -> None:
    allow = _policy(
        {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": f"arn:aws:ssm:r:{ACCOUNT}:parameter/a"}
    )
    unknown = Policy("inline", unknown="the policy of inline is not known yet")
    assert evaluate([allow, unknown], "ssm:GetParameter", f"arn:aws:ssm:r:{ACCOUNT}:parameter/a").allowed is None
    deny = _policy({"Effect": "Deny", "Action": "ssm:*", "Resource": "*"}, source="deny")
    assert evaluate([allow, unknown, deny], "ssm:GetParameter", "x").allowed is False
    # A resource whose ARN is not known: "*" still names it; a specific ARN may or may not.
    assert evaluate([allow], "ssm:GetParameter", None).allowed is None
    star = _policy({"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"})
    assert evaluate([star], "ssm:GetParameter", None).allowed is True
    # Any of several requests: allowed if one is, undecided before denied.
    requests = [("ssm:GetParameter", "arn:other"), ("ssm:GetParameter", None)]
    assert evaluate_any([allow], requests).allowed is None
    assert evaluate_any([star], requests).allowed is True


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", "not JSON"),
        ({"Version": "2012-10-17"}, "no Statement"),
        ({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}, "Effect must be Allow or Deny"),
        (
            {"Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "s3:*", "Resource": "*"}]},
            "exactly one of Action",
        ),
        ({"Statement": [{"Effect": "Allow", "Action": "*"}]}, "exactly one of Resource"),
        ({"Statement": [{"Effect": "Allow", "Action": [1], "Resource": "*"}]}, "Action must be a string"),
    ],
)
def test_a_document_iam_would_refuse_is_named_and_undecided(document: Any, problem: str) -> None:
    with pytest.raises(PolicyDocumentError, match=problem):
        parse_policy(document, "p")
    policy = Policy.of(document, "p")
    assert policy.unknown is not None and problem in policy.unknown
    assert evaluate([policy], "s3:GetObject", "x").allowed is None
