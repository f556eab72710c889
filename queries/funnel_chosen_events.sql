-- funnel_chosen_events: each unit's chosen attempt (_funnel_chosen_times) with the events behind
-- its step times: at each time the lowest event_id that satisfies the step, as (time, event_id)
-- order wants, and the breakdown value of the first.
-- returns: unit, level, breakdown, times, ids, first_time, first_id, last_time, last_id, ambiguous
-- params: none
WITH chosen_steps AS (
    SELECT unit, unnest(range(1, level + 1)) AS k, unnest(times) AS t
    FROM _funnel_chosen_times
),
step_events AS (
    SELECT
        c.unit,
        c.k,
        c.t,
        min(e.event_id) AS id,
        arg_min(e.breakdown, e.event_id) AS breakdown
    FROM chosen_steps AS c
    JOIN _funnel_events AS e
        ON e.unit = c.unit AND e.time = c.t AND (e.mask >> (c.k - 1)) & 1 = 1
    GROUP BY c.unit, c.k, c.t
),
by_unit AS (
    SELECT
        unit,
        any_value(breakdown) FILTER (WHERE k = 1) AS breakdown,
        list_transform(list_sort(list({'k': k, 'id': id})), lambda x: x.id) AS ids
    FROM step_events
    GROUP BY unit
)
SELECT
    c.unit,
    c.level,
    b.breakdown,
    c.times,
    b.ids,
    c.times[1] AS first_time,
    b.ids[1] AS first_id,
    c.times[c.level] AS last_time,
    b.ids[c.level] AS last_id,
    c.ambiguous
FROM _funnel_chosen_times AS c
JOIN by_unit AS b ON b.unit = c.unit
