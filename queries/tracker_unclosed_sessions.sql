-- tracker_unclosed_sessions: a node's sessions left open by a crash (an online row and no offline
-- row), each with its last binding and last activity; every row also carries the node's last
-- heartbeat and highest seq. When no session is open, one row with a null client_id.
-- returns: client_id, visit_token, visitor_token, user_id, last_activity, last_heartbeat, max_seq
-- params: $node_id
WITH mine AS (
    SELECT * FROM presence WHERE node_id = $node_id
),
node AS (
    SELECT
        max(time) FILTER (WHERE transition = 'heartbeat') AS last_heartbeat,
        max(seq) AS max_seq
    FROM mine
),
sessions AS (
    SELECT
        client_id,
        arg_max(visit_token, seq) FILTER (WHERE visit_token IS NOT NULL) AS visit_token,
        arg_max(visitor_token, seq) FILTER (WHERE visitor_token IS NOT NULL) AS visitor_token,
        arg_max(user_id, seq) FILTER (WHERE user_id IS NOT NULL) AS user_id,
        max(time) AS last_activity
    FROM mine
    WHERE client_id IS NOT NULL
    GROUP BY client_id
    HAVING bool_or(transition = 'online') AND NOT bool_or(transition = 'offline')
)
SELECT
    s.client_id,
    s.visit_token,
    s.visitor_token,
    s.user_id,
    s.last_activity,
    n.last_heartbeat,
    n.max_seq
FROM node AS n
LEFT JOIN sessions AS s ON true
ORDER BY s.client_id
