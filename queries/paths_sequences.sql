-- paths_sequences: the $top most frequent node sequences of $steps + 1 nodes at most from the
-- anchor (forward) or ending at it (backward), in time order, over `path_steps` (paths_steps.sql).
-- returns: rank, sequence, sessions, visitors
-- params: $steps, $top
SELECT
    row_number() OVER (ORDER BY count(*) DESC, sequence) AS rank,
    sequence,
    count(*) AS sessions,
    count(DISTINCT visitor_token) AS visitors
FROM (
    SELECT visitor_token, session_start, list(node ORDER BY pos) AS sequence
    FROM path_steps
    WHERE step BETWEEN 1 AND $steps + 1
    GROUP BY visitor_token, session_start
)
GROUP BY sequence
ORDER BY rank
LIMIT $top
