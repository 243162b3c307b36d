"""The fleet's claim certificate: created on first use, kept in SSM Parameter Store, reused.

Two parameters named from the stack (why SSM and not Secrets Manager: standard parameters are free,
the key fits a SecureString, and IAM scopes both by path):

- ``/<stack>/fleet/claim-certificate`` (String): JSON ``{certificateId, certificateArn, certificatePem}``
- ``/<stack>/fleet/claim-private-key`` (SecureString, the account's ``aws/ssm`` key): the PEM key

The certificate parameter is written first and is the record of what exists: a run that died after
it is repaired by the next one (the stray certificate is deleted and a fresh one made), so nothing
is left half-made. The claim certificate may only call the provisioning topics (output ``ClaimPolicy``),
and the stack's pre-provisioning hook admits only enrolled thing names.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass

from hybridstream.fleet.outputs import StackOutputs
from hybridstream.fleet.session import AwsContext, FleetError, error_code, explain

log = logging.getLogger("hybridstream.fleet.claim")


def cert_parameter(stack_name: str) -> str:
    return f"/{stack_name}/fleet/claim-certificate"


def key_parameter(stack_name: str) -> str:
    return f"/{stack_name}/fleet/claim-private-key"


@dataclass
class ClaimCertificate:
    certificate_id: str
    certificate_arn: str
    certificate_pem: str
    private_key: str
    created: bool = False


def _get(ssm, name: str, decrypt: bool = False) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return ssm.get_parameter(Name=name, WithDecryption=decrypt)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise


def _delete_param(ssm, name: str) -> None:
    from botocore.exceptions import ClientError

    try:
        ssm.delete_parameter(Name=name)
    except ClientError as exc:
        if error_code(exc) != "ParameterNotFound":
            raise


# DetachThingPrincipal "is asynchronous. It might take several seconds for the detachment to
# propagate" (https://docs.aws.amazon.com/iot/latest/apireference/API_DetachThingPrincipal.html);
# until then DeleteCertificate answers DeleteConflictException ("the certificate is attached to one
# or more things"). So: poll ListPrincipalThings with backoff, then delete, retrying a conflict.
DETACH_TIMEOUT = 60.0  # s
_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)
_sleep = time.sleep  # the tests replace it
_clock = time.monotonic


def _tries(timeout: float):
    """Yield once per try until ``timeout`` s have passed, sleeping 0.5, 1, 2, 4, 8, 8, ... s in between
    (at least one try; the caller says what it waited for when the tries run out)."""
    deadline = _clock() + timeout
    for i in itertools.count():
        yield i
        pause = _BACKOFF[min(i, len(_BACKOFF) - 1)]
        if _clock() + pause > deadline:
            return
        _sleep(pause)


def wait_detached(iot, certificate_arn: str, timeout: float = DETACH_TIMEOUT) -> None:
    """Return once no thing lists ``certificate_arn`` as its principal; FleetError after ``timeout``."""
    things: list[str] = []
    for _ in _tries(timeout):
        things = iot.list_principal_things(principal=certificate_arn).get("things", [])
        if not things:
            return
    raise FleetError(
        f"certificate {certificate_arn.rsplit('/', 1)[-1][:12]}... is still attached to {', '.join(things)} "
        f"{timeout:.0f} s after the detach: run the command again"
    )


def delete_certificate(iot, certificate_id: str, certificate_arn: str, timeout: float = DETACH_TIMEOUT) -> bool:
    """Detach every policy and thing, wait for the detach to propagate, deactivate and delete one
    certificate (a DeleteConflictException meanwhile is retried with backoff); False if it was gone."""
    from botocore.exceptions import ClientError

    try:
        for policy in iot.list_attached_policies(target=certificate_arn).get("policies", []):
            iot.detach_policy(policyName=policy["policyName"], target=certificate_arn)
        for thing in iot.list_principal_things(principal=certificate_arn).get("things", []):
            try:  # a listing may still show a detach that is propagating
                iot.detach_thing_principal(thingName=thing, principal=certificate_arn)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
        wait_detached(iot, certificate_arn, timeout)
        iot.update_certificate(certificateId=certificate_id, newStatus="INACTIVE")
        for _ in _tries(timeout):
            try:
                iot.delete_certificate(certificateId=certificate_id, forceDelete=True)
                return True
            except ClientError as exc:
                if error_code(exc) != "DeleteConflictException":
                    raise
                log.info("certificate %s: detach not propagated yet (%s), retrying", certificate_id[:12], exc)
        raise FleetError(f"certificate {certificate_id[:12]}... still conflicts {timeout:.0f} s after its detach")
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise


def _exists(iot, certificate_id: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        status = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"]
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return status == "ACTIVE"


def stored(ctx: AwsContext, outputs: StackOutputs) -> ClaimCertificate | None:
    """The stored claim certificate (None if there is none or it is incomplete)."""
    ssm = ctx.client("ssm")
    raw = _get(ssm, cert_parameter(outputs.stack_name))
    if raw is None:
        return None
    record = json.loads(raw)
    key = _get(ssm, key_parameter(outputs.stack_name), decrypt=True)
    if key is None:
        return ClaimCertificate(record["certificateId"], record["certificateArn"], record["certificatePem"], "")
    return ClaimCertificate(record["certificateId"], record["certificateArn"], record["certificatePem"], key)


def get_or_create(ctx: AwsContext, outputs: StackOutputs) -> ClaimCertificate:
    """The claim certificate, made (and the claim policy attached) when there is none yet."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return _get_or_create(ctx, outputs)
    except (BotoCoreError, ClientError) as exc:
        raise explain(exc, "getting the claim certificate") from exc


def _get_or_create(ctx: AwsContext, outputs: StackOutputs) -> ClaimCertificate:
    from botocore.exceptions import ClientError

    iot, ssm = ctx.client("iot"), ctx.client("ssm")
    current = stored(ctx, outputs)
    if current is not None and current.private_key and _exists(iot, current.certificate_id):
        return current
    if current is not None:  # half-made (no key) or deleted/deactivated behind our back: start over
        log.warning("stored claim certificate %s is incomplete or inactive: replacing it", current.certificate_id)
        delete_certificate(iot, current.certificate_id, current.certificate_arn)
        _delete_param(ssm, key_parameter(outputs.stack_name))
        _delete_param(ssm, cert_parameter(outputs.stack_name))
    policy = outputs.require("ClaimPolicy")
    made = iot.create_keys_and_certificate(setAsActive=True)
    cert = ClaimCertificate(
        made["certificateId"], made["certificateArn"], made["certificatePem"], made["keyPair"]["PrivateKey"], True
    )
    record = {
        "certificateId": cert.certificate_id,
        "certificateArn": cert.certificate_arn,
        "certificatePem": cert.certificate_pem,
    }
    wrote_cert = False
    try:
        iot.attach_policy(policyName=policy, target=cert.certificate_arn)
        ssm.put_parameter(
            Name=cert_parameter(outputs.stack_name),
            Description="hybridstream fleet provisioning claim certificate (hybridstream fleet enroll)",
            Value=json.dumps(record),
            Type="String",
            Overwrite=False,
        )
        wrote_cert = True
        ssm.put_parameter(
            Name=key_parameter(outputs.stack_name),
            Description="private key of the hybridstream claim certificate",
            Value=cert.private_key,
            Type="SecureString",
            Overwrite=False,
        )
    except ClientError as exc:
        # undo: nothing half-made (another enroll may have won the race: then use its certificate)
        delete_certificate(iot, cert.certificate_id, cert.certificate_arn)
        if wrote_cert:
            _delete_param(ssm, cert_parameter(outputs.stack_name))
        if error_code(exc) == "ParameterAlreadyExists" and not wrote_cert:
            winner = stored(ctx, outputs)
            if winner is not None and winner.private_key:
                return winner
        raise
    log.info("created claim certificate %s", cert.certificate_id)
    return cert


def delete(ctx: AwsContext, stack_name: str) -> list[str]:
    """Delete the claim certificate and its parameters; what was removed, as sentences."""
    iot, ssm = ctx.client("iot"), ctx.client("ssm")
    done: list[str] = []
    raw = _get(ssm, cert_parameter(stack_name))
    if raw is not None:
        record = json.loads(raw)
        if delete_certificate(iot, record["certificateId"], record["certificateArn"]):
            done.append(f"claim certificate {record['certificateId']} (policy detached, deleted)")
    for name in (key_parameter(stack_name), cert_parameter(stack_name)):
        if _get(ssm, name) is not None:
            _delete_param(ssm, name)
            done.append(f"SSM parameter {name}")
    if not done and raw is None:
        return []
    return done


__all__ = ["ClaimCertificate", "FleetError", "delete", "get_or_create", "stored", "cert_parameter", "key_parameter"]
