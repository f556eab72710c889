-- sessions: one row per analytics session (docs/reports.md, Sessions), from session_events.
-- user_id is the first bound user of the session's events; pageviews, entry_page and exit_page
-- count $view events only.
-- returns: session_id, visitor_token, user_id, started_at, ended_at, events, pageviews, entry_page, exit_page
-- params: none
SELECT
    session_id,
    visitor_token,
    arg_min(user_id, (time, event_id)) FILTER (WHERE user_id IS NOT NULL) AS user_id,
    min(time) AS started_at,
    max(time) AS ended_at,
    count(*) AS events,
    count(*) FILTER (WHERE name = '$view') AS pageviews,
    arg_min(page, (time, event_id)) FILTER (WHERE name = '$view') AS entry_page,
    arg_max(page, (time, event_id)) FILTER (WHERE name = '$view') AS exit_page
FROM session_events
GROUP BY session_id, visitor_token
