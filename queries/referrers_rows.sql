-- referrers_rows: the report's rows from _ref_grouped (dim_id, visits, visitors, conversions), one
-- row per dimension value made by referrers_by_dimension or referrers_stored_by_dimension, named
-- through _ref_dims (dim_id, dim); the most visited first.
-- returns: dim, visits, visitors, share, conversions, conversion_rate
-- params: $limit
SELECT
    d.dim,
    g.visits,
    g.visitors,
    g.visits / sum(g.visits) OVER () AS share,
    g.conversions,
    g.conversions / g.visits AS conversion_rate
FROM _ref_grouped AS g
JOIN _ref_dims AS d USING (dim_id)
ORDER BY g.visits DESC, d.dim
LIMIT $limit
