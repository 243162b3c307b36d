"""The demo's deployment modes, one object each: where a reading is forecast and where the speed
models are trained. A :class:`Mode` is a pair of parts, each written once:

============  ==========================================  =========================================
mode          forecasts (``inference``)                   trains the speed models (``training``)
============  ==========================================  =========================================
edge-cloud    the edge app on the Pi (:class:`OnEdge`)    the cloud trainer, windows via S3 + SQS
                                                          (:class:`InCloud`)
edge          the edge app on the Pi (:class:`OnEdge`)    a trainer on the Pi, windows in a local
                                                          outbox (:class:`OnPi`)
cloud         the cloud inference Lambda; the Pi only     the cloud trainer (:class:`InCloud`)
              forwards its readings (:class:`OnCloud`)
============  ==========================================  =========================================

The demo (:mod:`hybridstream.demo.run`) asks the mode, never the mode's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_contract.layout import MANIFEST_FILE, MODELS_PREFIX, REJECTED_PREFIX, manifest_key, speed_model_name


@dataclass(frozen=True)
class Site:
    """What the modes use of the running demo: the servers, the IoT rule router, the work folder and
    the S3 endpoint the edge side reaches (through toxiproxy when the link is shaped)."""

    servers: Any  # hybridstream.servers.local.LocalServers, started, with its queue and buckets
    router: Any  # hybridstream.servers.iot_router.IotRouter, started
    work: Path
    edge_s3: str

    @property
    def windows_bucket(self) -> str:
        return self.servers.buckets[0]

    @property
    def models_bucket(self) -> str:
        return self.servers.buckets[1]


# ---- where the speed models are trained ----------------------------------------------------------
class Training:
    """Where the windows go and where the trainer that turns them into speed models runs."""

    on_pi = False  # True: the trainer shares the Pi's CPU (quota)

    def __init__(self, site: Site) -> None:
        self.site = site

    def worker_args(self) -> list[str]:
        """``hybridstream train worker`` arguments saying where the windows come from."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        """Environment entries of the trainer beyond the demo's."""
        return {}

    def windows(self) -> dict[str, Any]:
        """The edge config's ``windows`` entries: where closed windows go."""
        raise NotImplementedError

    def busy(self) -> bool:
        """Windows still waiting for the trainer or being trained."""
        raise NotImplementedError

    def drop_backlog(self, thing: str) -> int:
        """Drop ``thing``'s windows still waiting for the trainer; how many were dropped."""
        raise NotImplementedError

    def forecast_files(self, report_dir: Path) -> list[Path]:
        """The forecasts objects the windows carried, copied into ``report_dir``."""
        raise NotImplementedError

    def upload_time(self, uploaded: dict[str, float], source: str) -> float | None:
        """When the window a model names as its ``source`` was uploaded (``uploaded``: key or URI -> time)."""
        key = source.split("/", 3)[-1] if source.startswith("s3://") else source
        return uploaded.get(source) or uploaded.get(key)


class InCloud(Training):
    """The edge uploads each window to the windows bucket, the router queues it on SQS and the cloud
    trainer takes it from the queue (edge-cloud, cloud)."""

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.queue_url = site.servers.info["sqs"]["queue_url"]

    def worker_args(self) -> list[str]:
        return ["--queue", self.queue_url, "--windows-bucket", self.site.windows_bucket, "--wait", "1", "--lease", "60"]

    def windows(self) -> dict[str, Any]:
        return {"uploader": "s3", "bucket": self.site.windows_bucket, "s3_endpoint_url": self.site.edge_s3}

    def _queued(self, *attributes: str) -> int:
        attrs = self.site.router.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=list(attributes))
        return sum(int(attrs["Attributes"][a]) for a in attributes)

    def busy(self) -> bool:
        return self._queued("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible") > 0

    def drop_backlog(self, thing: str) -> int:
        n = self._queued("ApproximateNumberOfMessages")
        if n:
            self.site.router.sqs.purge_queue(QueueUrl=self.queue_url)  # one thing at a time: all are its
        return n

    def forecast_files(self, report_dir: Path) -> list[Path]:
        from hybridstream.demo.forecast_history import collect

        return collect(report_dir, s3=self.site.servers.s3_client(), bucket=self.site.windows_bucket)


class OnPi(Training):
    """The edge writes each window to a local outbox and a trainer on the Pi watches it (edge)."""

    on_pi = True

    def __init__(self, site: Site) -> None:
        super().__init__(site)
        self.outbox = site.work / "edge-outbox"
        self.outbox.mkdir(parents=True, exist_ok=True)

    def worker_args(self) -> list[str]:
        return ["--watch", str(self.outbox), "--poll", "1", "--settle", "0.5"]

    def worker_env(self) -> dict[str, str]:
        return {"HYBRIDSTREAM_S3_ENDPOINT": self.site.edge_s3, "AWS_ENDPOINT_URL_S3": self.site.edge_s3}

    def windows(self) -> dict[str, Any]:
        return {"uploader": "local", "local_root": str(self.outbox)}

    def busy(self) -> bool:
        done = ("done", "rejected")
        return any(p.relative_to(self.outbox).parts[0] not in done for p in self.outbox.rglob("*.csv"))

    def drop_backlog(self, thing: str) -> int:
        waiting = list((self.outbox / "windows" / thing).rglob("*.csv")) if self.outbox.exists() else []
        for path in waiting:
            path.unlink(missing_ok=True)
        return len(waiting)

    def forecast_files(self, report_dir: Path) -> list[Path]:
        from hybridstream.demo.forecast_history import collect

        return collect(report_dir, folder=self.outbox)

    def upload_time(self, uploaded: dict[str, float], source: str) -> float | None:
        at = super().upload_time(uploaded, source)
        if at is None:  # the on-Pi trainer names the file it read: match by file name
            at = next((v for k, v in uploaded.items() if k and Path(k).name == Path(source).name), None)
        return at


# ---- where readings are forecast -----------------------------------------------------------------
class Predictions:
    """One scenario's prediction records: ``records`` (as received, replays included), ``keys`` (the
    distinct device|timestamp keys), ``duplicates`` (records of a key seen before) and the speed
    models that started serving (:meth:`swaps`), read from ``source``."""

    def __init__(self, source: Any) -> None:
        self.source = source

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.source.records

    @property
    def keys(self) -> set[str]:
        return self.source.keys

    @property
    def duplicates(self) -> int:
        return self.source.duplicates

    def swaps(self) -> list[tuple[float, str]]:
        """(when, version) of each speed model that started serving."""
        raise NotImplementedError

    def settled(self, announced: int) -> bool:
        """Nothing left to wait for of the ``announced`` models."""
        return True

    def close(self) -> None:
        """Stop reading (the scenario is over)."""


class EdgePredictions(Predictions):
    """The edge app's prediction records and swap events, as the scenario's collector reads them."""

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.source.records["predictions"]

    def swaps(self) -> list[tuple[float, str]]:
        return [(float(e["at"]), str(e.get("new_version"))) for e in self.source.events("model_swapped")]

    def settled(self, announced: int) -> bool:
        """Every announced model was swapped in or rejected by the edge."""
        return len(self.swaps()) + len(self.source.events("model_rejected")) >= announced


class CloudPredictions(Predictions):
    """The cloud inference Lambda's results on MQTT as prediction records (a router observer); the
    Lambda reads LATEST on each message, so there is no swap to wait for."""

    def __init__(self, thing: str, router: Any) -> None:
        from hybridstream.demo.cloud_results import CloudResults

        super().__init__(CloudResults(thing))
        self.router = router
        router.observers.append(self.source)

    def swaps(self) -> list[tuple[float, str]]:
        return [(at, v.rsplit("/", 1)[-1]) for at, v in self.source.speed_versions]

    def close(self) -> None:
        self.router.observers.remove(self.source)


class Inference:
    """Where the readings are forecast: what the Pi runs and where the prediction records come from."""

    command = "run"  # ``hybridstream edge <command>`` on the Pi
    announces_start = True  # the Pi's process sends a "started" event on the events topic
    unpredictable = 0  # readings that get no forecast by design
    no_forecasts: str | None = None  # why there is no forecast history (None: there is one)

    def __init__(self, site: Site) -> None:
        self.site = site

    def publish_batch(self, batch_dir: Path) -> None:
        """Make the batch model reachable where the forecasts are made."""

    def edge_config(self) -> dict[str, Any]:
        """Entries this mode adds to the Pi's config."""
        return {}

    def predictions(self, collector: Any, thing: str) -> Predictions:
        """The scenario's prediction records (``collector`` reads the Pi's Kafka topics)."""
        return EdgePredictions(collector)


class OnEdge(Inference):
    """The edge app forecasts every reading on the Pi (``edge run``; edge-cloud, edge); it reads the
    batch model from disk."""


class OnCloud(Inference):
    """The Pi only forwards its readings over MQTT (``edge forward``); the cloud inference Lambda
    forecasts them from ``models/batch/LATEST`` and the thing's speed model (cloud)."""

    command = "forward"
    announces_start = False  # the forwarder sends no events
    unpredictable = 1  # the first message has no lag context yet
    no_forecasts = "cloud mode: the edge only forwards readings, it makes no forecasts to upload"

    def publish_batch(self, batch_dir: Path) -> None:
        """Publish the batch model to the models bucket: the cloud inference Lambda reads models/batch/LATEST."""
        from model_contract import Manifest
        from training_job.publish import ModelStore

        store = ModelStore(self.site.servers.s3_client(), self.site.models_bucket, MODELS_PREFIX, REJECTED_PREFIX)
        manifest = Manifest.from_json((batch_dir / MANIFEST_FILE).read_bytes())
        store.publish((batch_dir / "model.tflite").read_bytes(), manifest)

    def edge_config(self) -> dict[str, Any]:
        return {"forward": {"interval_s": 0.05, "max_readings": 2}}  # one new reading per message

    def predictions(self, collector: Any, thing: str) -> CloudPredictions:
        return CloudPredictions(thing, self.site.router)


# ---- the modes -----------------------------------------------------------------------------------
MODES: dict[str, tuple[type[Inference], type[Training]]] = {
    "edge-cloud": (OnEdge, InCloud),
    "edge": (OnEdge, OnPi),
    "cloud": (OnCloud, InCloud),
}


@dataclass(frozen=True)
class Mode:
    """One deployment mode of the running demo: its name and its two parts."""

    name: str
    site: Site
    inference: Inference
    training: Training

    @classmethod
    def build(cls, name: str, site: Site) -> Mode:
        inference, training = MODES[name]
        return cls(name, site, inference(site), training(site))

    def models_published(self, thing: str) -> tuple[int, int]:
        """(published, refused) speed models of ``thing`` in the models bucket."""
        s3, name = self.site.servers.s3_client(), speed_model_name(thing)
        counts = []
        for prefix in (MODELS_PREFIX, REJECTED_PREFIX):
            n, token = 0, {}
            while True:
                resp = s3.list_objects_v2(Bucket=self.site.models_bucket, Prefix=f"{prefix}/{name}/", **token)
                n += sum(1 for o in resp.get("Contents", []) if o["Key"].endswith(f"/{MANIFEST_FILE}"))
                if not resp.get("IsTruncated"):
                    break
                token = {"ContinuationToken": resp["NextContinuationToken"]}
            counts.append(n)
        return counts[0], counts[1]

    def freshness(self, thing: str, swaps: list[tuple[float, str]], uploads: list[dict[str, Any]]) -> list[float]:
        """Seconds from a window's upload (``uploads``: the edge's window_uploaded events) to the model
        trained on it serving (``swaps``: (when, version)), for each model whose manifest names its window."""
        uploaded = {}
        for u in uploads:
            uploaded[u.get("key") or ""] = float(u["at"])
            uploaded[u.get("uri") or ""] = float(u["at"])
        out = []
        s3, name = self.site.servers.s3_client(), speed_model_name(thing)
        for swapped_at, version in swaps:
            try:
                body = s3.get_object(Bucket=self.site.models_bucket, Key=manifest_key(name, version))["Body"].read()
            except Exception:
                continue
            at = self.training.upload_time(uploaded, (json.loads(body).get("window") or {}).get("source", ""))
            if at is not None:
                out.append(round(swapped_at - at, 3))
        return out
