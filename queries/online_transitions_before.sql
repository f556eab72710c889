-- online_transitions_before: presence rows of the bound partitions strictly before an instant.
-- returns: time, seq, node_id, client_id, transition, reason, channel, visit_token, visitor_token, user_id
-- params: $before
SELECT time, seq, node_id, client_id, transition, reason, channel, visit_token, visitor_token, user_id
FROM presence
WHERE time < $before
ORDER BY time, node_id, seq
