"""``hybridstream results``: forecast against actual for the fleet, from the forecasts every Pi uploads.

Against a deployed stack (default) the query runs in Athena (the stack's workgroup and Glue table,
found from its outputs); with ``--local`` it runs in DuckDB over the forecasts mirrored from the
local stack's S3 (radosgw), with ``--from DIR`` over a folder laid out as the bucket. The SQL is the
same (:mod:`infra.forecast_queries`), so are the answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hybridstream.results.query import QUERIES, Request, table_text, utc_text

REPO = Path(__file__).resolve().parents[2]
LOCAL_BUCKET = "hybridstream-windows"  # the local stack's windows bucket (hybridstream.servers.local.BUCKETS)
POLL_S = 1.0  # Athena polling interval
ATHENA_DEFAULT_DAYS = 7  # without --since, Athena reads the last week (the workgroup's scan limit applies anyway)

EPILOG = """queries:
  rmse       RMSE per thing and device (--by-day: per UTC day) of batch, speed, static, dynamic and persistence
  worst      devices ranked by the dynamic forecast's skill against persistence, worst first (--limit)
  readings   forecast against actual, reading by reading (--plot PNG draws one device)
  anomalies  the readings whose actual value fell outside the forecast interval (when the edge sends one)

examples:
  hybridstream results --local                              # after `make demo`: every thing, every reading
  hybridstream results readings --local --thing pi-step --device turbine-1 --plot step.png
  hybridstream results worst --since 2026-11-30             # Athena, the deployed stack's workgroup
  hybridstream results rmse --by-day --thing pi-0042 --since 2026-11-24 --until 2026-11-25 --json"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="forecast history: RMSE against persistence, worst devices, forecast vs actual (Athena or local)",
        description="Forecast against actual for the fleet, from the forecasts every Pi uploads beside its windows. "
        "Against a deployed stack (default) the query runs in Athena, in the stack's workgroup over its Glue table "
        "(found from the stack's outputs); with --local it runs in DuckDB over the forecasts mirrored from the local "
        "stack's S3 (radosgw); with --from DIR over a folder laid out as the bucket. Same SQL, same answers.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("query", nargs="?", default="rmse", choices=QUERIES, help="what to ask (default rmse)")
    where = p.add_argument_group("which readings")
    where.add_argument("--thing", action="append", default=[], help="a thing (repeat for more; default: all)")
    where.add_argument("--device", help="one device (sensor) id")
    where.add_argument("--since", help="from this UTC date/time (ISO, e.g. 2017-01-14 or 2017-01-14T06:00Z)")
    where.add_argument("--until", help="before this UTC date/time")
    where.add_argument("--by-day", action="store_true", help="rmse: one row per UTC day")
    where.add_argument("--limit", type=int, default=20, help="worst: how many devices (default 20)")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="the rows as JSON (for scripts)")
    out.add_argument("--plot", metavar="PNG", help="draw forecast vs actual (and the band) of one device into PNG")
    src = p.add_argument_group("where the forecasts are")
    src.add_argument("--local", action="store_true",
                     help="the local stack's S3 (radosgw of `hybridstream local up`, or --endpoint); with none "
                     "running, the copy the last `make demo` kept (reports/latest/forecasts)")  # fmt: skip
    src.add_argument("--from", dest="from_dir", metavar="DIR", help="a folder laid out as the bucket (forecasts/...)")
    src.add_argument("--endpoint", help="--local: S3 endpoint URL (credentials from the AWS_* variables)")
    src.add_argument("--bucket", help=f"the windows bucket (default: {LOCAL_BUCKET} locally, the stack's output)")
    src.add_argument("--cache", default=str(REPO / ".cache" / "results"), help="--local: where objects are mirrored")
    aws = p.add_argument_group("deployed stack (Athena)")
    aws.add_argument("--stack", default="HybridStream", help="CloudFormation stack name (default HybridStream)")
    aws.add_argument("--profile", help="named AWS profile")
    aws.add_argument("--region", help="AWS region")
    aws.add_argument("--workgroup", help="Athena workgroup (default: the stack's ForecastsWorkGroup output)")
    aws.add_argument("--database", help="Glue database (default: the stack's ForecastsDatabase output)")
    p.set_defaults(func=main, group_parser=p)


def request_from(args: argparse.Namespace) -> Request:
    query = "readings" if args.plot and args.query == "rmse" else args.query
    if args.limit < 1:
        raise ValueError("--limit must be >= 1")
    request = Request(
        query=query,
        things=[t for item in args.thing for t in item.split(",") if t],
        device=args.device,
        since=utc_text(args.since) if args.since else None,
        until=utc_text(args.until) if args.until else None,
        by_day=args.by_day,
        limit=args.limit,
    )
    request.sql("forecasts")  # a bad name or time fails here, before anything is downloaded or started
    return request


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def local_engine(args: argparse.Namespace, request: Request):
    """DuckDB over --from DIR, the local stack's S3 (mirrored), or the last demo's copy."""
    from hybridstream.results.local import LocalEngine, local_files, mirror

    if args.from_dir:
        return LocalEngine(local_files(Path(args.from_dir)))
    s3 = local_s3(args)
    if s3 is None:
        kept = REPO / "reports" / "latest" / "forecasts"
        if not kept.is_dir():
            raise RuntimeError(
                "no local stack is running (`hybridstream local up`, or --endpoint) and no demo report kept its "
                "forecasts (reports/latest/forecasts): run `make demo` first"
            )
        say(f"results: no local stack running: reading the copy the last demo took of its S3 ({kept})")
        return LocalEngine(local_files(kept))
    # only the objects the bucket has now (the cache may hold another stack's)
    return LocalEngine(mirror(s3, args.bucket or LOCAL_BUCKET, Path(args.cache), request.things or None, say=say))


def local_s3(args: argparse.Namespace) -> Any:
    """A boto3 S3 client for --endpoint, or the running `hybridstream local up` stack's radosgw; None if neither."""
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2})
    if args.endpoint:  # a new session: the credentials in the environment now, not ones a default session cached
        return boto3.session.Session().client("s3", endpoint_url=args.endpoint, config=config)
    from hybridstream.servers.local import STACK_ROOT, status

    stack_file = STACK_ROOT / "stack.json"
    rows = [r for r in status() if r["server"] == "radosgw"]
    if not rows or not all(r["running"] for r in rows):
        return None
    keys = json.loads(Path(json.loads(stack_file.read_text())["servers"]["radosgw"]["keys_file"]).read_text())
    return boto3.client(
        "s3",
        endpoint_url=keys["endpoint"],
        aws_access_key_id=keys["access_key"],
        aws_secret_access_key=keys["secret_key"],
        region_name="us-east-1",
        config=config,
    )


def athena_engine(args: argparse.Namespace, request: Request, ctx: Any = None):
    """(AthenaEngine, table) from the stack's outputs; the things default to every forecasts/<thing>/ prefix."""
    from hybridstream.fleet import outputs
    from hybridstream.fleet.session import AwsContext
    from hybridstream.results.athena import AthenaEngine

    ctx = ctx or AwsContext(profile=args.profile, region=args.region)
    out = outputs.load(ctx, args.stack)
    workgroup = args.workgroup or out.require("ForecastsWorkGroup")
    database = args.database or out.require("ForecastsDatabase")
    if not request.things:  # Athena's injected partition needs the thing names: every prefix under forecasts/
        request.things = list_things(ctx.client("s3"), args.bucket or out.require("WindowsBucket"))
        if not request.things:
            raise RuntimeError("no forecasts/<thing>/ in the windows bucket yet: no Pi has uploaded a window")
        say(f"results: {len(request.things)} things with forecasts")
    if not request.since:
        from datetime import UTC, datetime, timedelta

        request.since = (datetime.now(UTC) - timedelta(days=ATHENA_DEFAULT_DAYS)).strftime("%Y-%m-%d %H:%M:%S.%f")
        say(f"results: the last {ATHENA_DEFAULT_DAYS} days (--since for another range)")
    engine = AthenaEngine(ctx.client("athena"), workgroup, database, say=say, poll_s=POLL_S)
    return engine, f'"{database}"."forecasts"'


def list_things(s3: Any, bucket: str) -> list[str]:
    """Every ``<thing>`` of ``forecasts/<thing>/`` in the bucket (one LIST per 1,000 things)."""
    things = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="forecasts/", Delimiter="/"):
        things += [p["Prefix"].split("/")[1] for p in page.get("CommonPrefixes", [])]
    return sorted(things)


def answer(args: argparse.Namespace, ctx: Any = None) -> list[dict[str, Any]]:
    """The rows for the parsed arguments (the engine chosen by --local / --from)."""
    from hybridstream.results import query

    request = request_from(args)
    if args.local or args.from_dir:
        return query.run(local_engine(args, request), request, "forecasts", prune=False)
    engine, table = athena_engine(args, request, ctx)
    return query.run(engine, request, table)


def main(args: argparse.Namespace) -> int:
    rows = answer(args, getattr(args, "aws_context", None))
    if args.plot:
        from hybridstream.results.plot import plot_readings

        if not rows:
            raise ValueError("nothing to plot: no readings match (check --thing, --device, --since, --until)")
        say(f"results: plot in {plot_readings(rows, args.plot)}")
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not args.plot:
        print(table_text(rows))
    return 0
