-- referrers_stored_by_dimension: visits, visitors and goal conversions per dimension id, the
-- visits in range joined by the key_hash of their stored source facts (as in
-- referrers_stored_keys) to _ref_keys (key_hash, dim_id); referrers_rows turns them into the report.
-- Whether a visit reached the goal comes from _goal_visits; without a goal the caller swaps that
-- fixed fragment for `false`.
-- returns: dim_id, visits, visitors, conversions
-- params: $since, $until, $include_bots, $with_query
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
)
SELECT
    k.dim_id,
    count(*) AS visits,
    count(DISTINCT v.visitor_token) AS visitors,
    count(*) FILTER (WHERE v.converted) AS conversions
FROM v
JOIN _ref_keys AS k USING (key_hash)
GROUP BY k.dim_id
