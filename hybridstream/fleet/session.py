"""AWS clients for the fleet commands, and one place that turns AWS failures into clear errors.

``--profile`` and ``--region`` behave as in the aws CLI (named profile, else the environment and the
default chain). botocore retries throttled calls (standard mode, up to ``MAX_ATTEMPTS``); what still
fails becomes a :class:`FleetError` with a sentence, never a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("hybridstream.fleet")

MAX_ATTEMPTS = 8
THROTTLING = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "SlowDown",
}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedException", "UnrecognizedClientException"}
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "RequestExpired"}

F = TypeVar("F", bound=Callable[..., Any])


class FleetError(RuntimeError):
    """A user-facing failure: the CLI prints the message and exits non-zero."""


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def explain(exc: Exception, doing: str = "") -> FleetError:
    """A :class:`FleetError` for a botocore/boto3 exception (``doing``: what we were doing)."""
    from botocore import exceptions as bx

    where = f" while {doing}" if doing else ""
    if isinstance(exc, FleetError):
        return exc
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return FleetError(
            f"no AWS credentials{where}: configure them (aws configure / aws sso login) or pass --profile"
        )
    if isinstance(exc, bx.ProfileNotFound):
        return FleetError(f"{exc} (check --profile and ~/.aws/config)")
    if isinstance(exc, bx.NoRegionError):
        return FleetError("no AWS region: pass --region or set AWS_REGION / a region in your profile")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError):
        return FleetError(f"cannot reach AWS{where}: {exc} (network, proxy or region?)")
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        op = getattr(exc, "operation_name", "") or "an AWS call"
        if code in THROTTLING:
            return FleetError(f"AWS throttled {op}{where} after {MAX_ATTEMPTS} attempts ({code}): try again later")
        if code in DENIED:
            return FleetError(f"access denied to {op}{where}: {message}")
        if code in EXPIRED:
            return FleetError(f"your AWS credentials are invalid or expired ({code}): sign in again")
        return FleetError(f"{op} failed{where}: {code}: {message}")
    if isinstance(exc, bx.BotoCoreError):
        return FleetError(f"AWS SDK error{where}: {exc}")
    return FleetError(f"{type(exc).__name__}{where}: {exc}")


def guarded(doing: str) -> Callable[[F], F]:
    """Decorator: AWS exceptions raised inside become :class:`FleetError` (``doing`` in the message)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                return fn(*args, **kwargs)
            except (BotoCoreError, ClientError) as exc:
                raise explain(exc, doing) from exc

        return inner  # type: ignore[return-value]

    return wrap


class AwsContext:
    """A boto3 session (``profile``/``region`` as in the aws CLI) handing out cached clients.

    Tests put their own (Stubber-wrapped) clients into ``clients`` before the command runs.
    """

    def __init__(self, profile: str | None = None, region: str | None = None) -> None:
        self.profile = profile
        self.region = region
        self.clients: dict[str, Any] = {}
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            import boto3
            from botocore.exceptions import BotoCoreError

            try:
                self._session = boto3.Session(profile_name=self.profile, region_name=self.region)
            except BotoCoreError as exc:
                raise explain(exc) from exc
        return self._session

    def client(self, service: str) -> Any:
        if service not in self.clients:
            from botocore.config import Config
            from botocore.exceptions import BotoCoreError

            retries = {"mode": "standard", "max_attempts": MAX_ATTEMPTS}
            config = Config(retries=retries, connect_timeout=10, read_timeout=30)
            try:
                self.clients[service] = self.session.client(service, config=config)
            except BotoCoreError as exc:
                raise explain(exc, f"creating the {service} client") from exc
        return self.clients[service]
