-- purpose: Deezer DSG17 listening log (train.csv of the 2017 skip challenge) -> canonical plays
-- input views: raw (user_id, media_id, ts_listen, is_listened, media_duration, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: none
-- notes: ts_listen is the listen start in unix seconds.  is_listened = 0 means the track was
--        skipped within its first 30 seconds (the challenge's definition): that is the skip
--        flag, 1 is kept.  Any other value leaves the flag null, so the timing rules decide
--        (the pause to the next play, as for a log without flags).  media_duration is the track
--        length in seconds; the log has no played time.
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        nullif(cast(user_id as varchar), '') as user_id,
        nullif(cast(media_id as varchar), '') as track_id,
        make_timestamp(epoch_us(try(to_timestamp(try_cast(cast(ts_listen as varchar) as double))))) as start_ts,
        try_cast(cast(is_listened as varchar) as bigint) as listened,
        try(try_cast(cast(media_duration as varchar) as double) * 1000)::bigint as duration,
        ts_listen is not null and start_ts is null as bad_ts
    from source
),

final as (
    select
        src_row,
        user_id,
        start_ts as ts,
        null::timestamp as ts_end,
        track_id as track_key,
        null::varchar as artist,
        null::varchar as title,
        null::bigint as played_ms,
        duration as duration_ms,
        case when listened = 0 then true when listened = 1 then false end as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when bad_ts then 'ts' end as parse_error
    from parsed
)

select * from final
