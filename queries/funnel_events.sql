-- funnel_events: the events one funnel reads, each with its counting unit and the bit mask of
-- the steps it satisfies (bit k-1 for step k); with details, also its event id, whether it
-- matches an --exclude step, its breakdown value and (for --dropped-at) who it was. The lean form
-- (no details) is what the ordered fast path reads when counts alone are asked for; it keeps
-- events that satisfy no step (relevant slot empty): its reader drops them after materializing
-- the scan, so no step predicate is evaluated twice. The
-- double-brace slots are filled by trailcli/reports/funnel.py from allow-listed names and fixed
-- fragments (trailcli/reports/steps.py); every value in them is bound.
-- returns: unit, time, mask, then with details event_id, excluded, breakdown, visitor_token,
--   visit_token, user_id
-- params: $scan_from, $scan_to, $date_from, $date_to
WITH scanned AS (
    SELECT
        {{unit}} AS unit,
        e.time,
        {{mask}} AS mask{{details}}
    FROM {{source}} AS e
    {{visit_join}}
    WHERE e.date BETWEEN $date_from AND $date_to
        AND e.time BETWEEN $scan_from AND $scan_to
        AND e.event_id IS NOT NULL
        {{name_filter}}
        {{bot_filter}}
)
SELECT * FROM scanned
WHERE unit IS NOT NULL {{relevant}} {{units}}
