-- online_client_sessions: the one per-client fold of the bound presence rows in [$since, $upto]
-- ($since: the instant of the snapshot carried in, which holds the earlier rows), shared by
-- online_sessions and online_timeline_sessions (which read it as the relation `client_sessions`).
-- A session starts at its first online row and ends at its first offline row; its visit, visitor
-- and user are those of its earliest row that names one, ties at one time broken by `seq` (log
-- order): `log_order` packs (time, seq) into one number, which DuckDB's arg_min compares about a
-- third faster than the pair. A person is the visit's first identity binding, else the session's
-- user id, else its visitor.
-- returns: node_id, client_id, started, ended, last_seen, visit_token, visitor_token, user_id, person, is_user
-- params: $since, $upto
WITH rows AS (
    SELECT *, epoch_us(time)::HUGEINT * 18446744073709551616 + seq AS log_order
    FROM presence
    WHERE time >= $since AND time <= $upto AND transition <> 'heartbeat' AND coalesce(client_id, '') <> ''
),
sessions AS (
    SELECT
        node_id,
        client_id,
        min(time) FILTER (WHERE transition = 'online') AS started,
        min(time) FILTER (WHERE transition = 'offline') AS ended,
        max(time) AS last_seen,
        arg_min(nullif(visit_token, ''), log_order) FILTER (WHERE nullif(visit_token, '') IS NOT NULL) AS visit_token,
        arg_min(nullif(visitor_token, ''), log_order) FILTER (WHERE nullif(visitor_token, '') IS NOT NULL) AS visitor_token,
        arg_min(nullif(user_id, ''), log_order) FILTER (WHERE nullif(user_id, '') IS NOT NULL) AS user_id
    FROM rows
    GROUP BY node_id, client_id
),
bound AS (
    SELECT visit_token, arg_min(user_id, (time, user_id)) AS user_id
    FROM identities
    WHERE user_id IS NOT NULL AND visit_token IN (SELECT visit_token FROM sessions)
    GROUP BY visit_token
)
SELECT
    s.*,
    coalesce(b.user_id, s.user_id, s.visitor_token) AS person,
    coalesce(b.user_id, s.user_id) IS NOT NULL AS is_user
FROM sessions AS s LEFT JOIN bound AS b USING (visit_token)
