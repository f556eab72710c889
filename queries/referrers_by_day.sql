-- referrers_by_day: per UTC day of the visits started in range: visits, distinct visitors and
-- goal conversions (visits listed in _goal_visits). Bot visits are left out unless $include_bots.
-- returns: day, visits, visitors, conversions
-- params: $since, $until, $include_bots
SELECT
    strftime(timezone('UTC', started_at), '%Y-%m-%d') AS day,
    count(*) AS visits,
    count(DISTINCT visitor_token) AS visitors,
    count(*) FILTER (WHERE visit_token IN (SELECT visit_token FROM _goal_visits)) AS conversions
FROM visits
WHERE ($since IS NULL OR started_at >= $since)
  AND ($until IS NULL OR started_at < $until)
  AND ($include_bots OR device_type IS DISTINCT FROM 'Bot')
GROUP BY day
ORDER BY day
