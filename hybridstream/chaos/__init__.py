"""``make chaos``: fault-injection scenarios against the real local stack, with figures.

Each scenario family is one module (``broker``, ``edge_sigkill``, ``link``, ``disk``, ``trainer``,
``model_faults``, ``fuzz``, ``load``, ``security``) exposing ``SCENARIOS``: a list of
``(name, function)``; a function takes a :class:`~hybridstream.chaos.harness.Context` and returns
a :class:`~hybridstream.chaos.result.Result`. :mod:`hybridstream.chaos.runner` runs them and
:mod:`hybridstream.chaos.report` writes ``reports/chaos/results.json`` and ``report.md``.

The edge app always runs as a separate process through its CLI (``hybridstream edge run
--config``), killed and restarted by PID; servers are real (Apache Kafka, mosquitto with mTLS,
Ceph radosgw, ElasticMQ) and network faults go through toxiproxy.
"""
