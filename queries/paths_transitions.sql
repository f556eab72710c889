-- paths_transitions: the most frequent transitions per step, $top per step, over `path_steps`
-- (paths_steps.sql). Forward, step k goes from the k-th node after the anchor (the anchor is node
-- 1) to the next, or to '(exit)'; with $backward, step k goes from the node before to the k-th node
-- counting back from the anchor, or from '(entry)'.
-- returns: step, from, to, sessions, visitors
-- params: $backward, $steps, $top
SELECT
    step,
    "from",
    "to",
    count(*) AS sessions,
    count(DISTINCT visitor_token) AS visitors
FROM (
    SELECT
        step,
        visitor_token,
        CASE WHEN $backward
             THEN coalesce(lag(node) OVER (PARTITION BY visitor_token, session_start ORDER BY pos), '(entry)')
             ELSE node END AS "from",
        CASE WHEN $backward THEN node
             ELSE coalesce(lead(node) OVER (PARTITION BY visitor_token, session_start ORDER BY pos), '(exit)') END AS "to"
    FROM path_steps
    WHERE step BETWEEN 0 AND $steps + 1
)
WHERE step BETWEEN 1 AND $steps
GROUP BY step, "from", "to"
QUALIFY row_number() OVER (PARTITION BY step ORDER BY count(*) DESC, "from", "to") <= $top
ORDER BY step, sessions DESC, "from", "to"
