-- purpose: how many input rows each drop reason takes (null = usable), and whether the mapped
--          columns parse at all
-- input views: cleaned (clean.sql: canonical plays + drop_reason)
-- output columns: drop_reason, plays, bad_ts, has_ts, bad_played, has_played, has_track
-- grain: one row per drop reason (null included)
-- parameters: none
-- notes: the counts over all rows let prep stop with a clear error when a column never parses
--        (a wrong --col mapping) instead of dropping every row.
with cleaned as (
    select * from cleaned
),

final as (
    select
        drop_reason,
        count(*) as plays,
        count(*) filter (where parse_error = 'ts') as bad_ts,
        count(*) filter (where ts is not null) as has_ts,
        count(*) filter (where parse_error = 'played_ms') as bad_played,
        count(*) filter (where played_ms is not null) as has_played,
        count(*) filter (where coalesce(track_key, '') <> '') as has_track
    from cleaned
    group by drop_reason
)

select * from final
