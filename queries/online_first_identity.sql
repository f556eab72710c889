-- online_first_identity: the first user binding of each of the given visits (docs/data-model.md: a visit's first binding).
-- returns: visit_token, user_id
-- params: $tokens
SELECT visit_token, arg_min(user_id, (time, user_id)) AS user_id
FROM identities
WHERE user_id IS NOT NULL AND visit_token IN (SELECT unnest($tokens))
GROUP BY visit_token
