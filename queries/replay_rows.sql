-- replay_rows: one person's trail (a user id, a visitor token or a visit token; the other two
-- params are null): visits, events, online/offline presence transitions and identity bindings,
-- in time order. detail is a JSON object text; rank orders kinds at equal times.
-- returns: time, kind, visit_token, name, detail, rank, tie
-- params: $user, $visitor, $visit, $since, $until, $limit
WITH rows AS (
    SELECT
        started_at AS time, 'visit' AS kind, visit_token, NULL AS name,
        json_object(
            'landing_page', landing_page, 'referrer', referrer,
            'utm_source', utm_source, 'utm_medium', utm_medium, 'utm_campaign', utm_campaign,
            'utm_term', utm_term, 'device_type', device_type, 'browser', browser, 'os', os,
            'country', country, 'region', region, 'city', city
        )::VARCHAR AS detail,
        0 AS rank, visit_token AS tie
    FROM visits
    WHERE (user_id = $user OR visitor_token = $visitor OR visit_token = $visit)
    UNION ALL
    SELECT
        time, 'event', visit_token, name, coalesce(properties, '{}'), 3, event_id
    FROM events
    WHERE (user_id = $user OR visitor_token = $visitor OR visit_token = $visit)
    UNION ALL
    SELECT
        time, transition, visit_token, reason,
        json_object('reason', reason, 'client_id', client_id, 'node_id', node_id)::VARCHAR,
        CASE transition WHEN 'online' THEN 1 ELSE 4 END, lpad(CAST(seq AS VARCHAR), 20, '0')
    FROM presence
    WHERE transition IN ('online', 'offline')
      AND (user_id = $user OR visitor_token = $visitor OR visit_token = $visit)
    UNION ALL
    SELECT
        time, 'identify', visit_token, user_id,
        json_object('user_id', user_id, 'source', source)::VARCHAR, 2, user_id
    FROM identities
    WHERE (user_id = $user OR visitor_token = $visitor OR visit_token = $visit)
)
SELECT time, kind, visit_token, name, detail, rank, tie
FROM rows
WHERE time IS NOT NULL
  AND ($since IS NULL OR time >= $since)
  AND ($until IS NULL OR time < $until)
ORDER BY time, rank, tie
LIMIT $limit
