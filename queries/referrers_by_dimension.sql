-- referrers_by_dimension: visits, visitors and goal conversions per dimension id, from the
-- `visitor` rows of _ref_groups (key_hash, visitor_token, visits, conversions) joined by key_hash
-- to _ref_keys (key_hash, dim_id); referrers_rows turns them into the report.
-- returns: dim_id, visits, visitors, conversions
-- params: none
SELECT
    k.dim_id,
    CAST(sum(r.visits) AS BIGINT) AS visits,
    count(DISTINCT r.visitor_token) AS visitors,
    CAST(sum(r.conversions) AS BIGINT) AS conversions
FROM _ref_groups AS r
JOIN _ref_keys AS k USING (key_hash)
WHERE r.kind = 'visitor'
GROUP BY k.dim_id
