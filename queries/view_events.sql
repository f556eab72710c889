-- events: one row per event id, user_id resolved through the visit's first identity binding, plus
-- `page` (docs/data-model.md: properties.page of a $view, else the path of properties.url without its query;
-- null for other events and for a url that is neither absolute nor a path).
-- returns: the events columns of docs/data-model.md, then page
-- params: none
WITH resolved AS (
    SELECT
        e.* REPLACE (coalesce(fi.user_id, e.user_id) AS user_id),
        nullif(json_extract_string(e.properties, '$.page'), '') AS _prop_page,
        json_extract_string(e.properties, '$.url') AS _url
    FROM raw_events AS e
    LEFT JOIN first_identity AS fi USING (visit_token)
)
SELECT
    * EXCLUDE (_prop_page, _url),
    CASE WHEN name = '$view' THEN coalesce(
        _prop_page,
        CASE
            WHEN regexp_matches(_url, '^[A-Za-z][A-Za-z0-9+.-]*://')
                THEN coalesce(nullif(regexp_extract(_url, '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)', 1), ''), '/')
            WHEN starts_with(_url, '/') THEN regexp_extract(_url, '^([^?#]*)', 1)
        END
    ) END AS page
FROM resolved
