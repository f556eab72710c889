-- paths_transitions: the most frequent transitions per step, $top per step.
-- Nodes are the pages of $view events per session (session_events; a session is its visitor and start), cleaned by the first
-- matching rule of $clean_patterns (full-match regexes) -> $clean_names, consecutive repeats
-- collapsed. The anchor is the first node matching $anchor (a LIKE pattern, '\' escapes; null:
-- the session's first node). Forward, step k goes from the k-th node after the anchor (the anchor
-- is node 1) to the next, or to '(exit)'; with $backward, step k goes from the node before to the
-- k-th node counting back from the anchor, or from '(entry)'. Bot visits are left out unless
-- $include_bots.
-- returns: step, from, to, sessions, visitors
-- params: $since, $until, $include_bots, $clean_patterns, $clean_names, $anchor, $backward, $steps, $top
WITH page_views AS (
    SELECT e.visitor_token, e.session_start, e.time, e.event_id, e.page
    FROM session_events AS e
    LEFT JOIN visits AS v ON v.visit_token = e.visit_token
    WHERE e.name = '$view'
      AND e.page IS NOT NULL
      AND ($since IS NULL OR e.time >= $since)
      AND ($until IS NULL OR e.time < $until)
      AND ($include_bots OR v.device_type IS DISTINCT FROM 'Bot')
),
cleaned AS (
    SELECT
        visitor_token, session_start, time, event_id,
        CASE WHEN len($clean_patterns) = 0 THEN page ELSE coalesce(
            list_filter(
                list_zip($clean_patterns, $clean_names), lambda r: regexp_full_match(page, r[1])
            )[1][2],
            page
        ) END AS node
    FROM page_views
),
marked AS (
    SELECT *, lag(node) OVER (PARTITION BY visitor_token, session_start ORDER BY time, event_id) AS _previous
    FROM cleaned
),
collapsed AS (
    SELECT
        visitor_token, session_start, node,
        row_number() OVER (PARTITION BY visitor_token, session_start ORDER BY time, event_id) AS pos
    FROM marked
    WHERE _previous IS DISTINCT FROM node
),
anchors AS (
    SELECT
        visitor_token,
        session_start,
        CASE WHEN $anchor IS NULL THEN 1
             ELSE min(pos) FILTER (WHERE node LIKE $anchor ESCAPE '\') END AS anchor_pos
    FROM collapsed
    GROUP BY visitor_token, session_start
),
stepped AS (
    SELECT
        c.visitor_token, c.session_start, c.node, c.pos,
        CASE WHEN $backward THEN a.anchor_pos - c.pos + 1 ELSE c.pos - a.anchor_pos + 1 END AS step
    FROM collapsed AS c
    JOIN anchors AS a USING (visitor_token, session_start)
    WHERE a.anchor_pos IS NOT NULL
)
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
    FROM stepped
    WHERE step BETWEEN 0 AND $steps + 1
)
WHERE step BETWEEN 1 AND $steps
GROUP BY step, "from", "to"
QUALIFY row_number() OVER (PARTITION BY step ORDER BY count(*) DESC, "from", "to") <= $top
ORDER BY step, sessions DESC, "from", "to"
