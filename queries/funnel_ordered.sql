-- funnel_ordered: the fast path for ordered funnels with the window from the first step (the
-- ASOF-join chain). Each step-1 event in [$anchor_from, $anchor_to) starts an attempt; an ASOF
-- join takes the earliest later event, by (time, event_id), of each next step, kept while within
-- $window of the first. Each unit keeps its earliest attempt of the best level. The chain slot
-- holds one fixed fragment per step after the first; the times, ids and level slots list them.
-- returns: unit, level, breakdown, times, ids, first_time, first_id, last_time, last_id
-- params: $window, $anchor_from, $anchor_to
WITH j1 AS (
    SELECT unit, time AS t1, event_id AS i1, time + $window AS deadline, breakdown
    FROM _funnel_events
    WHERE mask & 1 <> 0 AND time >= $anchor_from AND time < $anchor_to
),
{{chain}},
attempts AS (
    SELECT
        unit,
        breakdown,
        {{level}} AS level,
        t1,
        i1,
        list_filter([{{times}}], lambda x: x IS NOT NULL) AS times,
        list_filter([{{ids}}], lambda x: x IS NOT NULL) AS ids
    FROM {{last}}
)
SELECT
    unit,
    level,
    breakdown,
    times,
    ids,
    t1 AS first_time,
    i1 AS first_id,
    times[level] AS last_time,
    ids[level] AS last_id
FROM attempts
QUALIFY row_number() OVER (PARTITION BY unit ORDER BY level DESC, t1, i1) = 1
