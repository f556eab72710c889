-- funnel_counts: per breakdown group and step, the units that reached it and the time from the
-- previous step (interpolated median and p90 seconds) over those units. Groups beyond the
-- $limit largest (by units entering) merge into '(other)'; without a breakdown there is one group.
-- returns: breakdown, step, reached, dropoff, conv_total, conv_step, median_seconds, p90_seconds
-- params: $steps, $limit, $timed, $by
WITH counted AS (
    SELECT * FROM _funnel_units WHERE NOT excluded
),
sizes AS (
    SELECT breakdown, count(*) AS units FROM counted GROUP BY breakdown
),
ranked AS (
    SELECT breakdown, row_number() OVER (ORDER BY units DESC, breakdown NULLS LAST) AS rank
    FROM sizes
),
labelled AS (
    SELECT
        CASE WHEN r.rank <= $limit THEN c.breakdown ELSE '(other)' END AS breakdown,
        c.level,
        c.times
    FROM counted AS c
    JOIN ranked AS r ON c.breakdown IS NOT DISTINCT FROM r.breakdown
),
groups AS (
    SELECT DISTINCT breakdown FROM labelled
    UNION
    SELECT NULL WHERE NOT $by
),
steps AS (
    SELECT unnest(range(1, $steps + 1)) AS step
),
per_step AS (
    SELECT
        g.breakdown,
        s.step,
        count(l.level) AS reached,
        quantile_cont(epoch(l.times[s.step]) - epoch(l.times[s.step - 1]), 0.5)
            FILTER (WHERE s.step > 1 AND $timed) AS median_seconds,
        quantile_cont(epoch(l.times[s.step]) - epoch(l.times[s.step - 1]), 0.9)
            FILTER (WHERE s.step > 1 AND $timed) AS p90_seconds
    FROM groups AS g
    CROSS JOIN steps AS s
    LEFT JOIN labelled AS l ON l.breakdown IS NOT DISTINCT FROM g.breakdown AND l.level >= s.step
    GROUP BY g.breakdown, s.step
),
shaped AS (
    SELECT
        breakdown,
        step,
        reached,
        coalesce(lag(reached) OVER w - reached, 0) AS dropoff,
        reached / nullif(first_value(reached) OVER w, 0) AS conv_total,
        reached / nullif(coalesce(lag(reached) OVER w, reached), 0) AS conv_step,
        median_seconds,
        p90_seconds,
        first_value(reached) OVER w AS entering
    FROM per_step
    WINDOW w AS (PARTITION BY breakdown ORDER BY step)
)
SELECT * EXCLUDE (entering)
FROM shaped
ORDER BY breakdown = '(other)' NULLS FIRST, entering DESC, breakdown NULLS FIRST, step
