-- referrers_goal_empty: the goal visits table when no --goal is given (no visit converts).
-- returns: visit_token
-- params: none
SELECT CAST(NULL AS VARCHAR) AS visit_token WHERE false
