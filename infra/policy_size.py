"""IoT policy size, as IoT Core counts it (plain Python, no CDK imports).

``CreatePolicy`` / ``CreatePolicyVersion`` accept a document of at most 2,048 characters
excluding whitespace (https://docs.aws.amazon.com/iot/latest/apireference/API_CreatePolicy.html),
counted on the document CloudFormation sends: account, region and partition filled in, IoT
policy variables (``${iot:Connection.Thing.ThingName}``) still as text. :func:`render` fills in
a template value with the longest values those pseudo parameters can take.

>>> policy_chars({"Statement": [{"Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}]]}}]})
37
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

IOT_POLICY_MAX_CHARS = 2048
# Upper bounds, not a real region: the longest partition (aws-us-gov) with one of the longest
# region names (14 characters: ap-southeast-7, us-isob-east-1, eusc-de-east-1), a 12-digit account.
WORST_CASE_PSEUDO = {
    "AWS::Partition": "aws-us-gov",
    "AWS::Region": "ap-southeast-7",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com.cn",
}


def render(value: Any, refs: Mapping[str, str] = WORST_CASE_PSEUDO) -> Any:
    """``value`` with ``Ref`` (pseudo parameters or ``refs`` entries) and ``Fn::Join`` resolved.

    >>> render({"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]})
    'a-ap-southeast-7'
    """
    if isinstance(value, list):
        return [render(v, refs) for v in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            if value["Ref"] not in refs:
                raise KeyError(f"cannot render Ref {value['Ref']}: pass its value in refs")
            return refs[value["Ref"]]
        if set(value) == {"Fn::Join"}:
            sep, parts = value["Fn::Join"]
            return sep.join(str(render(p, refs)) for p in parts)
        if len(value) == 1 and next(iter(value)).startswith("Fn::"):
            raise ValueError(f"cannot render {next(iter(value))}: not a Ref or Fn::Join")
        return {k: render(v, refs) for k, v in value.items()}
    return value


def policy_chars(document: Mapping[str, Any], refs: Mapping[str, str] = WORST_CASE_PSEUDO) -> int:
    """Characters IoT counts for ``document`` once rendered (whitespace excluded)."""
    text = json.dumps(render(dict(document), refs), separators=(",", ":"))
    return len(re.sub(r"\s", "", text))
