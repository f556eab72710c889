-- online_node_beats: each node's last heartbeat in [$since, $upto] in the bound partitions.
-- returns: node_id, beat
-- params: $since, $upto
SELECT node_id, max(time) AS beat
FROM presence
WHERE transition = 'heartbeat' AND time >= $since AND time <= $upto
GROUP BY node_id
