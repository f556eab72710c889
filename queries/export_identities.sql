-- export_identities: every stored identities row of one person (any of their visitor tokens, visit
-- tokens or user ids) in time order, as the identities view reads it (user_id resolved).
-- returns: the identities view's columns
-- params: $visitors, $visits, $users
SELECT *
FROM identities
WHERE list_contains($visitors, visitor_token)
   OR list_contains($visits, visit_token)
   OR list_contains($users, user_id)
ORDER BY time, visit_token, user_id
