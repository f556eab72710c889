-- referrers_by_dimension: visits, visitors, share and goal conversions per dimension value, from
-- the visits of _ref_visits joined to the classified keys of _ref_keys (column `dim`).
-- returns: dim, visits, visitors, share, conversions, conversion_rate
-- params: $limit
WITH attributed AS (
    SELECT k.dim, r.visitor_token, r.converted
    FROM _ref_visits AS r
    JOIN _ref_keys AS k USING (
        utm_source, utm_medium, utm_campaign, utm_term, click_id,
        ref_scheme, ref_host, ref_path, ref_query, landing_host, landing_path
    )
),
grouped AS (
    SELECT
        dim,
        count(*) AS visits,
        count(DISTINCT visitor_token) AS visitors,
        count(*) FILTER (WHERE converted) AS conversions
    FROM attributed
    GROUP BY dim
)
SELECT
    dim,
    visits,
    visitors,
    visits / sum(visits) OVER () AS share,
    conversions,
    conversions / visits AS conversion_rate
FROM grouped
ORDER BY visits DESC, dim
LIMIT $limit
