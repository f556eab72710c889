"""The metrics registry: counters, bound counter series, gauges and the text format."""

from __future__ import annotations

from trailcli.collector.metrics import Metrics


def test_a_bound_series_adds_to_the_same_counter_as_inc() -> None:
    m = Metrics()
    series = m.counter("http_requests_total", {"route": "/x", "status": "200"})
    series.inc()
    series.inc(2)
    m.inc("http_requests_total", {"status": "200", "route": "/x"})
    assert m.value("http_requests_total", {"route": "/x", "status": "200"}) == 4
    assert m.value("http_requests_total", {"route": "/x", "status": "404"}) == 0
    assert 'trail_http_requests_total{route="/x",status="200"} 4' in m.render()
    assert "# TYPE trail_http_requests_total counter" in m.render()
