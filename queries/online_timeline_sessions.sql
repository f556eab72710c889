-- online_timeline_sessions: every client session of the shared fold (`client_sessions`) with its
-- person, joined with the sessions carried from a snapshot (the `carried` relation):
-- a carried session keeps its person and its stretch start; `ended` is null while undecided.
-- returns: node_id, client_id, person, is_user, started, ended, last_seen
-- params: none
SELECT
    coalesce(k.node_id, c.node_id) AS node_id,
    coalesce(k.client_id, c.client_id) AS client_id,
    coalesce(c.person, k.person) AS person,
    coalesce(c.is_user, k.is_user) AS is_user,
    coalesce(c.started, k.started) AS started,
    CASE WHEN c.node_id IS NOT NULL AND c.ended IS NOT NULL THEN c.ended
         WHEN k.ended >= coalesce(c.started, k.started) THEN k.ended END AS ended,
    greatest(k.last_seen, c.last_seen) AS last_seen
FROM client_sessions AS k FULL OUTER JOIN carried AS c USING (node_id, client_id)
WHERE c.node_id IS NOT NULL OR k.started IS NOT NULL
