-- online_beats_after: each node's last heartbeat after an instant, in the bound partitions.
-- returns: node_id, beat
-- params: $after
SELECT node_id, max(time) AS beat
FROM presence
WHERE transition = 'heartbeat' AND time > $after
GROUP BY node_id
