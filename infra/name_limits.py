"""Every physical name the stack builds from ``name_prefix``, checked against its service's limit at
synth (``AppConfig``), so a prefix too long or with a character a service refuses fails with the
name, the limit and its source instead of a warning (or a failed ``cdk deploy`` half an hour in).

aws-cdk-lib's own template validation (cdk.json: ``@aws-cdk/core:validateAgainstDefaultRules``)
turns its findings into errors as well; this check names the context value to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SERIAL_MAX = 64  # the pre-provisioning hook's serial: [a-zA-Z0-9_-]{1,64} (hybridstream.fleet.enroll)
IOT_API = "https://docs.aws.amazon.com/iot/latest/apireference"


@dataclass(frozen=True)
class NameLimit:
    what: str
    suffix: str  # the name is f"{prefix}{suffix}"
    max_length: int
    pattern: str  # the whole name must match
    source: str
    reserve: int = 0  # characters added on the device (a serial)

    def problem(self, prefix: str) -> str | None:
        name = f"{prefix}{self.suffix}"
        longest = len(name) + self.reserve
        if longest > self.max_length:
            extra = f" + a serial of up to {self.reserve}" if self.reserve else ""
            return (
                f"{self.what} {name!r}{extra} is {longest} characters, at most {self.max_length} "
                f"(name_prefix at most {self.max_length - len(self.suffix) - self.reserve}; {self.source})"
            )
        if not re.fullmatch(self.pattern, name):
            return f"{self.what} {name!r} does not match {self.pattern} ({self.source})"
        return None


def limits(rule_names: tuple[str, ...]) -> tuple[NameLimit, ...]:
    """The stack's prefixed names; ``rule_names``: the IoT topic rules of the mode (``<prefix>_<rule>``)."""
    longest_rule = max(rule_names, key=len) if rule_names else "rule"
    return (
        NameLimit("fleet provisioning template", "-fleet-provisioning", 36, r"[0-9A-Za-z_-]+",
                  f"{IOT_API}/API_CreateProvisioningTemplate.html"),
        NameLimit("thing name", "-", 128, r"[a-zA-Z0-9:_-]+", f"{IOT_API}/API_CreateThing.html", SERIAL_MAX),
        NameLimit("MQTT client id of a claim", "-claim-", 128, r"[a-zA-Z0-9:_-]+",
                  "https://docs.aws.amazon.com/general/latest/gr/iot-core.html (client ID size)", SERIAL_MAX),
        NameLimit("thing group", "-canary", 128, r"[a-zA-Z0-9:_-]+", f"{IOT_API}/API_CreateThingGroup.html"),
        NameLimit("IoT policy", "-provisioning-claim", 128, r"[\w+=,.@-]+", f"{IOT_API}/API_CreatePolicy.html"),
        NameLimit("role alias", "-tes-alias", 128, r"[\w=,@-]+", f"{IOT_API}/API_CreateRoleAlias.html"),
        NameLimit("IoT topic rule", f"_{longest_rule}", 128, r"[a-zA-Z0-9_-]+",  # '-' becomes '_' in the stack
                  f"{IOT_API}/API_CreateTopicRule.html"),
        NameLimit("EventBridge rule", "-deployment-failed", 64, r"[\.\-_A-Za-z0-9]+",
                  "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html"),
        NameLimit("Athena workgroup", "-forecasts", 128, r"[a-zA-Z0-9._-]+",
                  "https://docs.aws.amazon.com/athena/latest/APIReference/API_CreateWorkGroup.html"),
        NameLimit("CloudWatch dashboard", "", 255, r"[A-Za-z0-9_-]+",
                  "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html"),
    )  # fmt: skip


def check_name_prefix(prefix: str, rule_names: tuple[str, ...]) -> None:
    """ValueError listing every physical name ``prefix`` would make too long or invalid."""
    problems = [p for limit in limits(rule_names) if (p := limit.problem(prefix))]
    if problems:
        raise ValueError(f"context name_prefix {prefix!r} cannot be used: " + "; ".join(problems))
