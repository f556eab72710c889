-- paths_steps: the page nodes of each session, numbered as steps from the anchor; the shared
-- start of paths_transitions and paths_sequences, which read it as the relation `path_steps`.
-- Nodes are the pages of $view events per session (session_events; a session is its visitor and
-- start), cleaned by the first matching rule of $clean_patterns (full-match regexes) ->
-- $clean_names, consecutive repeats collapsed. The anchor is the first node matching $anchor (a
-- LIKE pattern, '\' escapes; null: the session's first node); forward the anchor is step 1 and
-- later nodes count up, with $backward earlier nodes count up from it. Bot visits are left out
-- unless $include_bots.
-- returns: visitor_token, session_start, node, pos, step
-- params: $since, $until, $include_bots, $clean_patterns, $clean_names, $anchor, $backward
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
SELECT visitor_token, session_start, node, pos, step FROM stepped
