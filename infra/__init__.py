"""The hybridstream CDK app: one construct per concern, composed by :mod:`infra.stack`.

Plain Python (no CDK imports), so the local stack and the tests can read them without
aws-cdk-lib: :mod:`infra.topic_rules` (the rule definitions, the contract; their CDK construct
is :mod:`infra.topic_rules_construct`), :mod:`infra.config` (context values),
:mod:`infra.artifacts` (what the app is built from), :mod:`infra.regions` (refused regions),
:mod:`infra.policy_size` (IoT's policy size rule) and :mod:`infra.recipes`.
"""
