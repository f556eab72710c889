-- referrers_stored_by_dimension: visits, visitors, share and goal conversions per dimension value,
-- the visits in range joined by the key_hash of their stored source facts (as in
-- referrers_stored_keys) to _ref_keys (key_hash, dim_id) and the names of _ref_dims (dim_id, dim).
-- Whether a visit reached the goal comes from _goal_visits; without a goal the caller swaps that
-- fixed fragment for `false`.
-- returns: dim, visits, visitors, share, conversions, conversion_rate
-- params: $since, $until, $include_bots, $with_query, $limit
WITH v AS (
    SELECT
        visitor_token,
        (visit_token IN (SELECT visit_token FROM _goal_visits)) AS converted,
        hash(utm_source, utm_medium, utm_campaign, CASE WHEN $with_query THEN utm_term END,
             click_id, referrer_kind, referring_domain, referrer_path_rule,
             CASE WHEN $with_query THEN search_term END) AS key_hash
    FROM visits
    WHERE ($since IS NULL OR started_at >= $since)
      AND ($until IS NULL OR started_at < $until)
      AND ($include_bots OR device_type IS DISTINCT FROM 'Bot')
),
grouped AS (
    SELECT
        k.dim_id,
        count(*) AS visits,
        count(DISTINCT v.visitor_token) AS visitors,
        count(*) FILTER (WHERE v.converted) AS conversions
    FROM v
    JOIN _ref_keys AS k USING (key_hash)
    GROUP BY k.dim_id
)
SELECT
    d.dim,
    g.visits,
    g.visitors,
    g.visits / sum(g.visits) OVER () AS share,
    g.conversions,
    g.conversions / g.visits AS conversion_rate
FROM grouped AS g
JOIN _ref_dims AS d USING (dim_id)
ORDER BY g.visits DESC, d.dim
LIMIT $limit
