-- online_timeline_sessions: every client session of the bound presence partitions up to an instant
-- with its person, joined with the sessions carried from a snapshot (the `carried` relation):
-- a carried session keeps its person and its stretch start; `ended` is null while undecided.
-- returns: node_id, client_id, person, is_user, started, ended, last_seen
-- params: $upto
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
        arg_min(nullif(visit_token, ''), (time, seq)) FILTER (WHERE nullif(visit_token, '') IS NOT NULL) AS visit_token,
        arg_min(nullif(visitor_token, ''), (time, seq)) FILTER (WHERE nullif(visitor_token, '') IS NOT NULL) AS visitor_token,
        arg_min(nullif(user_id, ''), (time, seq)) FILTER (WHERE nullif(user_id, '') IS NOT NULL) AS user_id
    FROM rows
    GROUP BY node_id, client_id
),
bound AS (
    SELECT visit_token, arg_min(user_id, (time, user_id)) AS user_id
    FROM identities
    WHERE user_id IS NOT NULL AND visit_token IN (SELECT visit_token FROM sessions)
    GROUP BY visit_token
),
keyed AS (
    SELECT
        s.*,
        coalesce(b.user_id, s.user_id, s.visitor_token) AS person,
        coalesce(b.user_id, s.user_id) IS NOT NULL AS is_user
    FROM sessions AS s LEFT JOIN bound AS b USING (visit_token)
)
SELECT
    coalesce(k.node_id, c.node_id) AS node_id,
    coalesce(k.client_id, c.client_id) AS client_id,
    coalesce(c.person, k.person) AS person,
    coalesce(c.is_user, k.is_user) AS is_user,
    coalesce(c.started, k.started) AS started,
    CASE WHEN c.node_id IS NOT NULL AND c.ended IS NOT NULL THEN c.ended
         WHEN k.ended >= coalesce(c.started, k.started) THEN k.ended END AS ended,
    greatest(k.last_seen, c.last_seen) AS last_seen
FROM keyed AS k FULL OUTER JOIN carried AS c USING (node_id, client_id)
WHERE c.node_id IS NOT NULL OR k.started IS NOT NULL
