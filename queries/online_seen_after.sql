-- online_seen_after: the last row in (after, until] per node and client in the bound partitions
-- (client_id '' carries the node's heartbeats): proof that a session or node was alive after it.
-- returns: node_id, client_id, seen
-- params: $after, $until
SELECT node_id, coalesce(client_id, '') AS client_id, max(time) AS seen
FROM presence
WHERE time > $after AND time <= $until
GROUP BY node_id, coalesce(client_id, '')
