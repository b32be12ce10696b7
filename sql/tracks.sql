-- purpose: dense track codes in key order, with one display name per track
-- input views: kept (usable plays)
-- output columns: track_code (int32, from 0), track_key, artist, title
-- grain: one row per distinct track_key
-- parameters: none
-- notes: the names are the smallest seen for the key, so they never depend on file order.
with kept as (
    select * from kept
),

tracks as (
    select
        track_key,
        min(artist) as artist,
        min(title) as title
    from kept
    group by track_key
),

final as (
    select
        (row_number() over (order by track_key) - 1)::int as track_code,
        track_key,
        artist,
        title
    from tracks
)

select * from final
