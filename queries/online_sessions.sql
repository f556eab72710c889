-- online_sessions: per-client sessions (the shared fold, read as `client_sessions`) for the
-- persons that have a session reaching `near_from` or later, or are carried in from a snapshot,
-- and for the carried sessions themselves (`node_id/client_id` in $carried_clients: their later
-- rows, an offline one say, may name no person), with each one's channel rows
-- (subscribe/unsubscribe in log order) only when $with_channels.
-- returns: node_id, client_id, started, ended, last_seen, visit_token, visitor_token, user_id, person, channel_rows
-- params: $since, $upto, $near_from, $carried, $carried_clients, $with_channels
WITH near AS (
    SELECT DISTINCT person FROM client_sessions
    WHERE person IS NOT NULL AND (ended IS NULL OR ended >= $near_from)
    UNION
    SELECT unnest($carried::VARCHAR[])
),
picked AS MATERIALIZED (
    SELECT * EXCLUDE (is_user) FROM client_sessions
    WHERE person IN (SELECT person FROM near)
        OR (person IS NULL AND (ended IS NULL OR ended >= $near_from))
        OR node_id || '/' || client_id IN (SELECT unnest($carried_clients::VARCHAR[]))
),
channels AS (
    SELECT node_id, client_id,
        list({'time': time, 'seq': seq, 'transition': transition, 'channel': channel} ORDER BY time, seq) AS channel_rows
    FROM presence
    WHERE $with_channels AND time >= $since AND time <= $upto AND transition IN ('subscribe', 'unsubscribe')
        AND coalesce(client_id, '') <> '' AND client_id IN (SELECT client_id FROM picked)
    GROUP BY node_id, client_id
)
SELECT p.*, c.channel_rows
FROM picked AS p LEFT JOIN channels AS c USING (node_id, client_id)
