"""Offline evaluation of the edge's model combination and drift detection.

Faithful to the edge: a batch model pre-trained on the scenario's history, a speed model
re-trained on every closed window of the stream and swapped in once it is ready, TFLite
forecasts per record. The prediction streams are computed once and cached
(:mod:`hybridstream.evaluation.streams`); every combiner and detector is then replayed over
them cheaply (:mod:`~hybridstream.evaluation.combiner_study`, :mod:`~hybridstream.evaluation.drift_study`).
"""
