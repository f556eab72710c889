-- funnel_ordered: the fast path for ordered funnels with the window from the first step (the
-- ASOF-join chain). Each step-1 event in [$anchor_from, $anchor_to) starts an attempt; an ASOF
-- join takes the time of the earliest event at or after the previous step's time of each next
-- step, kept while within $window of the first (the closed window of
-- trailcli/reports/funnel_match.py in_window: time <= t1 + $window). Each unit keeps its
-- earliest attempt of the best level, as the times of its steps (funnel_chosen_events.sql finds their events). Where a step's
-- time equals the previous step's, the (time, event_id) order and the one-event-one-step rule
-- need more than times: such units are flagged `ambiguous` and matched again by
-- trailcli/reports/funnel_match.py. The chain slot holds one fixed fragment per step after the
-- first; the chosen_times, level and tie slots list them. (2^56 in `best` leaves room for any
-- microsecond time before the year 4000.) The events slot holds the statement of the step events
-- (unit, time, mask): a read of `_funnel_events`, or the lean funnel_events.sql itself (with its
-- own bound values), so that counts alone never materialize the events.
-- returns: unit, level, times, ambiguous
-- params: $window, $anchor_from, $anchor_to
WITH ev AS (
    {{events}}
),
j1 AS (
    SELECT unit, time AS t1, time + $window AS deadline
    FROM ev
    WHERE mask & 1 <> 0 AND time >= $anchor_from AND time < $anchor_to
),
{{chain}},
attempts AS (
    -- the best attempt has the smallest key: the highest level first, then the earliest start
    SELECT *, {{level}} AS level, epoch_us(t1) - ({{level}}) * 72057594037927936 AS best
    FROM {{last}}
),
chosen AS (
    SELECT
        unit,
        max(level) AS level,
        [{{chosen_times}}] AS times,
        coalesce(bool_or({{tie}}), false) AS ambiguous
    FROM attempts
    GROUP BY unit
)
SELECT unit, level, times[1:level] AS times, ambiguous FROM chosen
