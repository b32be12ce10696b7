-- purpose: Music Streaming Sessions Dataset log rows -> canonical plays
-- input views: raw (session_id, session_position, track_id_clean, skip_1..3, date, hour_of_day, ...)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: none
-- notes: MSSD has no user id, so every session is its own user.  Time is only date + hour, so
--        ts = date + hour for every play and session_position orders the plays.  The skip label
--        is skip_2 (the challenge's label; skip_1 implies skip_2 implies skip_3).
--        date comes as ISO (2018-07-15) in the official files and dd-mm-yy in some copies.
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        cast(session_id as varchar) as session_id,
        cast(track_id_clean as varchar) as track_id,
        try_cast(session_position as bigint) as position,
        try_cast(skip_2 as boolean) as skip_2,
        case
            when regexp_full_match(cast(date as varchar), '\d\d-\d\d-\d\d')
                then try_strptime(cast(date as varchar), '%d-%m-%y')
            else try_strptime(cast(date as varchar), '%Y-%m-%d')
        end + to_hours(coalesce(try_cast(hour_of_day as bigint), 0)) as start_ts,
        date is not null and start_ts is null as bad_ts
    from source
),

final as (
    select
        src_row,
        session_id as user_id,
        start_ts as ts,
        start_ts as ts_end,
        track_id as track_key,
        null::varchar as artist,
        null::varchar as title,
        null::bigint as played_ms,
        null::bigint as duration_ms,
        skip_2 as skip_flag,
        session_id as session_hint,
        position as position_hint,
        false as is_podcast,
        case when bad_ts then 'ts' end as parse_error
    from parsed
)

select * from final
