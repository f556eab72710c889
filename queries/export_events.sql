-- export_events: every stored events row of one person (any of their visitor tokens, visit
-- tokens or user ids) in time order, as the events view reads it (user_id resolved).
-- returns: the events view's columns
-- params: $visitors, $visits, $users
SELECT *
FROM events
WHERE list_contains($visitors, visitor_token)
   OR list_contains($visits, visit_token)
   OR list_contains($users, user_id)
ORDER BY time, event_id
