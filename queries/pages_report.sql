-- pages_report: per page (or per title with $by_title) of $view events in range: views, distinct
-- visitors, entries (sessions whose first view in range is this page), exits (sessions whose last
-- view is this page) and exit_rate = exits / views. Sessions come from session_events; bot visits
-- are left out unless $include_bots.
-- returns: page, views, visitors, entries, exits, exit_rate
-- params: $since, $until, $include_bots, $by_title, $limit
WITH page_views AS (
    SELECT
        e.visitor_token,
        e.session_start,
        e.time,
        e.event_id,
        CASE WHEN $by_title THEN nullif(json_extract_string(e.properties, '$.title'), '')
             ELSE e.page END AS page
    FROM session_events AS e
    LEFT JOIN visits AS v ON v.visit_token = e.visit_token
    WHERE e.name = '$view'
      AND ($since IS NULL OR e.time >= $since)
      AND ($until IS NULL OR e.time < $until)
      AND ($include_bots OR v.device_type IS DISTINCT FROM 'Bot')
),
named AS (
    SELECT * FROM page_views WHERE page IS NOT NULL
),
per_session AS (
    SELECT
        arg_min(page, (time, event_id)) AS entry_page,
        arg_max(page, (time, event_id)) AS exit_page
    FROM named
    GROUP BY visitor_token, session_start
),
entries AS (
    SELECT entry_page AS page, count(*) AS entries FROM per_session GROUP BY entry_page
),
exits AS (
    SELECT exit_page AS page, count(*) AS exits FROM per_session GROUP BY exit_page
),
counts AS (
    SELECT page, count(*) AS views, count(DISTINCT visitor_token) AS visitors
    FROM named
    GROUP BY page
)
SELECT
    c.page,
    c.views,
    c.visitors,
    coalesce(en.entries, 0) AS entries,
    coalesce(ex.exits, 0) AS exits,
    coalesce(ex.exits, 0) / c.views AS exit_rate
FROM counts AS c
LEFT JOIN entries AS en USING (page)
LEFT JOIN exits AS ex USING (page)
ORDER BY c.views DESC, c.page
LIMIT $limit
