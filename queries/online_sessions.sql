-- online_sessions: per-client sessions of the bound presence partitions up to an instant, for the
-- persons that have a session reaching `near_from` or later, or are carried in from a snapshot.
-- A person is the visit's first identity binding, else the session's user id, else its visitor.
-- channel_rows (subscribe/unsubscribe in log order) only when $with_channels.
-- returns: node_id, client_id, started, ended, last_seen, visit_token, visitor_token, user_id, person, channel_rows
-- params: $upto, $near_from, $carried, $with_channels
WITH rows AS (
    SELECT * FROM presence
    WHERE time <= $upto AND transition <> 'heartbeat' AND coalesce(client_id, '') <> ''
),
sessions AS (
    SELECT
        node_id,
        client_id,
        min(time) FILTER (WHERE transition = 'online') AS started,
        min(time) FILTER (WHERE transition = 'offline') AS ended,
        max(time) AS last_seen,
        arg_min(nullif(visit_token, ''), time) FILTER (WHERE nullif(visit_token, '') IS NOT NULL) AS visit_token,
        arg_min(nullif(visitor_token, ''), time) FILTER (WHERE nullif(visitor_token, '') IS NOT NULL) AS visitor_token,
        arg_min(nullif(user_id, ''), time) FILTER (WHERE nullif(user_id, '') IS NOT NULL) AS user_id
    FROM rows
    GROUP BY node_id, client_id
),
bound AS (
    SELECT visit_token, arg_min(user_id, (time, user_id)) AS user_id
    FROM identities
    WHERE user_id IS NOT NULL AND visit_token IN (SELECT visit_token FROM sessions)
    GROUP BY visit_token
),
keyed AS MATERIALIZED (
    SELECT s.*, coalesce(b.user_id, s.user_id, s.visitor_token) AS person
    FROM sessions AS s LEFT JOIN bound AS b USING (visit_token)
),
near AS (
    SELECT DISTINCT person FROM keyed
    WHERE person IS NOT NULL AND (ended IS NULL OR ended >= $near_from)
    UNION
    SELECT unnest($carried::VARCHAR[])
),
picked AS MATERIALIZED (
    SELECT * FROM keyed
    WHERE person IN (SELECT person FROM near)
        OR (person IS NULL AND (ended IS NULL OR ended >= $near_from))
),
channels AS (
    SELECT node_id, client_id,
        list({'time': time, 'seq': seq, 'transition': transition, 'channel': channel} ORDER BY time, seq) AS channel_rows
    FROM rows
    WHERE $with_channels AND transition IN ('subscribe', 'unsubscribe')
        AND client_id IN (SELECT client_id FROM picked)
    GROUP BY node_id, client_id
)
SELECT p.*, c.channel_rows
FROM picked AS p LEFT JOIN channels AS c USING (node_id, client_id)
