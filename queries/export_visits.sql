-- export_visits: every stored visits row of one person (any of their visitor tokens, visit
-- tokens or user ids) in time order, as the visits view reads it (user_id resolved).
-- returns: the visits view's columns
-- params: $visitors, $visits, $users
SELECT *
FROM visits
WHERE list_contains($visitors, visitor_token)
   OR list_contains($visits, visit_token)
   OR list_contains($users, user_id)
ORDER BY started_at, visit_token
