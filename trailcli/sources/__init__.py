"""Where a visit came from: the referrer database and the facts worked out from a referrer and landing page (shared by the collector, `trail sample` and the reports)."""
