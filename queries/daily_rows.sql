-- daily_rows: the figures kept for purged days (the `daily` table's files), by date, from
-- $first to $last (NULL: unbounded).
-- returns: date, visits, visitors, views, view_visitors, entries, exits, into_next_day, max_online, min_online, avg_online, peak_at, kept_at
-- params: $paths, $first, $last
SELECT *
FROM read_parquet($paths, union_by_name = true)
WHERE ($first IS NULL OR date >= $first)
  AND ($last IS NULL OR date <= $last)
ORDER BY date
