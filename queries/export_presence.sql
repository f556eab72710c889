-- export_presence: every stored presence row of one person (any of their visitor tokens, visit
-- tokens or user ids) in time order, as the presence view reads it (user_id resolved).
-- returns: the presence view's columns
-- params: $visitors, $visits, $users
SELECT *
FROM presence
WHERE list_contains($visitors, visitor_token)
   OR list_contains($visits, visit_token)
   OR list_contains($users, user_id)
ORDER BY time, node_id, seq
