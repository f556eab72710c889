-- referrers_by_dimension: visits, visitors, share and goal conversions per dimension value, from
-- the `visitor` rows of _ref_groups (key_hash, visitor_token, visits, conversions) joined by
-- key_hash to _ref_keys (key_hash, dim_id) and the names of _ref_dims (dim_id, dim).
-- returns: dim, visits, visitors, share, conversions, conversion_rate
-- params: $limit
WITH grouped AS (
    SELECT
        k.dim_id,
        CAST(sum(r.visits) AS BIGINT) AS visits,
        count(DISTINCT r.visitor_token) AS visitors,
        CAST(sum(r.conversions) AS BIGINT) AS conversions
    FROM _ref_groups AS r
    JOIN _ref_keys AS k USING (key_hash)
    WHERE r.kind = 'visitor'
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
