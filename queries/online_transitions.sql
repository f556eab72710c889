-- online_transitions: presence rows of the bound partitions up to an instant, in log order.
-- returns: time, seq, node_id, client_id, transition, reason, channel, visit_token, visitor_token, user_id
-- params: $upto
SELECT time, seq, node_id, client_id, transition, reason, channel, visit_token, visitor_token, user_id
FROM presence
WHERE time <= $upto
ORDER BY time, node_id, seq
