-- session_events: every event of a known visitor with the analytics session it belongs to.
-- docs/reports.md (Sessions): per visitor, events ordered by (time, event_id); a new session starts where the gap
-- since the previous event is at least getvariable('session_timeout') (default 30 minutes).
-- session_id is the visitor token and the session's start, so it is stable as data grows later.
-- returns: the events columns, then session_start, session_id
-- params: none
WITH gaps AS (
    SELECT *, time - lag(time) OVER visitor_order AS _gap
    FROM events
    WHERE visitor_token IS NOT NULL AND time IS NOT NULL
    WINDOW visitor_order AS (PARTITION BY visitor_token ORDER BY time, event_id)
),
starts AS (
    SELECT
        * EXCLUDE (_gap),
        max(CASE WHEN _gap IS NULL OR _gap >= getvariable('session_timeout') THEN time END) OVER (
            PARTITION BY visitor_token ORDER BY time, event_id ROWS UNBOUNDED PRECEDING
        ) AS session_start
    FROM gaps
)
SELECT
    *,
    visitor_token || '/' || strftime(session_start, '%Y-%m-%dT%H:%M:%S.%fZ') AS session_id
FROM starts
