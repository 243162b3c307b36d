"""``hybridstream results``: the fleet's forecast history (forecasts/ in the windows bucket), queried with
Athena on a deployed stack or with DuckDB over a local copy (the local stack's radosgw)."""
