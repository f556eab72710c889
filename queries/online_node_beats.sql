-- online_node_beats: each node's last heartbeat up to an instant in the bound partitions.
-- returns: node_id, beat
-- params: $upto
SELECT node_id, max(time) AS beat
FROM presence
WHERE transition = 'heartbeat' AND time <= $upto
GROUP BY node_id
