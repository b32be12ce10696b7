-- purpose: Piki music ratings (like / dislike swipes) -> canonical plays
-- input views: raw (user_id, timestamp, song_id, liked, ...)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: none
-- notes: every row is an explicit rating; a dislike (liked = 0) is the negative signal and is
--        recorded as the skip flag.
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        cast(user_id as varchar) as user_id,
        try_cast(cast("timestamp" as varchar) as timestamp) as start_ts,
        cast(song_id as varchar) as song,
        try_cast(liked as bigint) as liked,
        "timestamp" is not null and start_ts is null as bad_ts
    from source
),

final as (
    select
        src_row,
        user_id,
        start_ts as ts,
        null::timestamp as ts_end,
        song as track_key,
        null::varchar as artist,
        null::varchar as title,
        null::bigint as played_ms,
        null::bigint as duration_ms,
        liked = 0 as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when bad_ts then 'ts' end as parse_error
    from parsed
)

select * from final
