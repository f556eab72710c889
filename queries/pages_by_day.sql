-- pages_by_day: per UTC day of $view events in range: views, distinct visitors, entries (sessions
-- whose first view in range fell that day), exits (sessions whose last view fell that day) and
-- exit_rate = exits / views, as pages_report counts them per page, and into_next_day: the
-- sessions with views on both sides of the day's end (what a purge of the days up to this one
-- would add to the next day's entries). Bot visits are left out unless $include_bots.
-- returns: day, views, visitors, entries, exits, exit_rate, into_next_day
-- params: $since, $until, $include_bots
WITH named AS (
    SELECT
        e.visitor_token,
        e.session_start,
        e.time,
        e.event_id,
        strftime(timezone('UTC', e.time), '%Y-%m-%d') AS day
    FROM session_events AS e
    LEFT JOIN visits AS v ON v.visit_token = e.visit_token
    WHERE e.name = '$view'
      AND e.page IS NOT NULL
      AND ($since IS NULL OR e.time >= $since)
      AND ($until IS NULL OR e.time < $until)
      AND ($include_bots OR v.device_type IS DISTINCT FROM 'Bot')
),
per_session AS (
    SELECT
        arg_min(day, (time, event_id)) AS entry_day,
        arg_max(day, (time, event_id)) AS exit_day
    FROM named
    GROUP BY visitor_token, session_start
),
entries AS (
    SELECT entry_day AS day, count(*) AS entries FROM per_session GROUP BY entry_day
),
exits AS (
    SELECT exit_day AS day, count(*) AS exits FROM per_session GROUP BY exit_day
),
crossing AS (
    SELECT entry_day, exit_day FROM per_session WHERE exit_day > entry_day
),
counts AS (
    SELECT day, count(*) AS views, count(DISTINCT visitor_token) AS visitors
    FROM named
    GROUP BY day
)
SELECT
    c.day,
    c.views,
    c.visitors,
    coalesce(en.entries, 0) AS entries,
    coalesce(ex.exits, 0) AS exits,
    coalesce(ex.exits, 0) / c.views AS exit_rate,
    (SELECT count(*) FROM crossing AS x WHERE x.entry_day <= c.day AND x.exit_day > c.day)
        AS into_next_day
FROM counts AS c
LEFT JOIN entries AS en USING (day)
LEFT JOIN exits AS ex USING (day)
ORDER BY c.day
