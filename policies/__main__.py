"""The policy pack: `pulumi preview --policy-pack policies` runs this file (rules live in rules.py).

Constructing a PolicyPack starts the analyzer server and never returns (pulumi-traps 22),
so nothing imports this file; tests import rules.py instead.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from rules import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    policies=POLICIES,
    enforcement_level=EnforcementLevel.MANDATORY,  # docker-pinned sets its own (advisory)
)
