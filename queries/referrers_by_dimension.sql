-- referrers_by_dimension: visits, visitors, share and goal conversions per dimension value, from
-- the visits of _ref_visits joined by key_hash to the classified keys of _ref_keys (key_hash,
-- dim; one row per hash, which the caller checks).
-- returns: dim, visits, visitors, share, conversions, conversion_rate
-- params: $limit
WITH grouped AS (
    SELECT
        k.dim,
        count(*) AS visits,
        count(DISTINCT r.visitor_token) AS visitors,
        count(*) FILTER (WHERE r.converted) AS conversions
    FROM _ref_visits AS r
    JOIN _ref_keys AS k USING (key_hash)
    GROUP BY k.dim
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
