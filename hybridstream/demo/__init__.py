"""``make demo``: the whole edge-cloud loop on one machine, on real local servers, with a report."""
