"""Development tools that never ship to a device: the edge benchmark, CSV replay, test models.

``make bench-edge`` runs :mod:`hybridstream.devtools.edge_bench`; ``hybridstream edge replay``
is :mod:`hybridstream.devtools.csv_publisher` (registered into the ``edge`` group by
:mod:`hybridstream.devtools.cli`).
"""
