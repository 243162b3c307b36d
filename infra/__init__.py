"""The hybridstream CDK app: one construct per concern, composed by :mod:`infra.stack`.

:mod:`infra.topic_rules` and :mod:`infra.config` are plain Python (no CDK imports), so the
local stack can read the same rule definitions without aws-cdk-lib.
"""
