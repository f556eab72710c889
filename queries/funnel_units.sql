-- funnel_units: each unit's chosen attempt (_funnel_chosen) flagged `excluded` when an --exclude
-- event lies strictly between its first and last event (by time, event_id) and is not itself one
-- of the attempt's steps; such a unit is left out of every count. Ambiguous units are left to
-- the pure matcher. The excluded_events slot reads the excluded rows of `_funnel_events`, or,
-- for a funnel without --exclude, is an empty relation (the join then drops out of the plan).
-- returns: unit, level, breakdown, times, ids, first_time, first_id, last_time, last_id, excluded
-- params: none
WITH hits AS (
    SELECT DISTINCT c.unit
    FROM _funnel_chosen AS c
    JOIN {{excluded_events}} AS x
        ON x.unit = c.unit
        AND (x.time, x.event_id) > (c.first_time, c.first_id)
        AND (x.time, x.event_id) < (c.last_time, c.last_id)
    WHERE c.level > 1 AND NOT c.ambiguous AND NOT list_contains(c.ids, x.event_id)
)
SELECT c.* EXCLUDE (ambiguous), h.unit IS NOT NULL AS excluded
FROM _funnel_chosen AS c
LEFT JOIN hits AS h ON h.unit = c.unit
WHERE NOT c.ambiguous
