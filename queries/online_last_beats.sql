-- online_last_beats: each node's last heartbeat in the bound partitions.
-- returns: node_id, beat
-- params: none
SELECT node_id, max(time) AS beat
FROM presence
WHERE transition = 'heartbeat'
GROUP BY node_id
