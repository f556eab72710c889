-- first_identity: each visit's earliest identity binding (docs/data-model.md: a visit's user is its first binding).
-- returns: visit_token, user_id, bound_at
-- params: none
SELECT visit_token, arg_min(user_id, (time, user_id)) AS user_id, min(time) AS bound_at
FROM identities
WHERE visit_token IS NOT NULL AND user_id IS NOT NULL
GROUP BY visit_token
