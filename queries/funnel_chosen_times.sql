-- funnel_chosen_times: each unit's chosen attempt (_funnel_chosen_times) in the shape of
-- funnel_chosen_events.sql, without looking up its events: for counts and timings alone (the
-- breakdown value of the first step comes with the chosen attempt).
-- returns: unit, level, breakdown, times, ids, first_time, first_id, last_time, last_id, ambiguous
-- params: none
SELECT
    unit,
    level,
    breakdown,
    times,
    CAST(NULL AS VARCHAR[]) AS ids,
    times[1] AS first_time,
    CAST(NULL AS VARCHAR) AS first_id,
    times[level] AS last_time,
    CAST(NULL AS VARCHAR) AS last_id,
    ambiguous
FROM _funnel_chosen_times
