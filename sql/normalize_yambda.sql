-- purpose: Yambda (Yandex Music) flat listens -> canonical plays
-- input views: raw (uid, timestamp, item_id, played_ratio_pct, track_length_seconds, is_organic,
--              event_type, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: none
-- notes: timestamp counts seconds from an undisclosed start (Yambda publishes relative time, in
--        steps of 5 s); second 0 is placed at 2000-01-01 00:00 so that order and pauses, all that
--        sessions and splits read, are kept: the dates are not calendar dates.
--        played_ratio_pct is the share of the track played (100 = all of it, more for replays
--        within a listen); with track_length_seconds it gives played_ms, and the skip rule is
--        played / length below --skip-ratio (prep's default for this format: 0.5, the threshold
--        Yambda's authors use for a listen).  multi_event.parquet holds likes and dislikes too:
--        rows whose event_type is not 'listen' are not plays (parse_error 'event', counted by clean).
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        nullif(cast(uid as varchar), '') as user_id,
        nullif(cast(item_id as varchar), '') as track_id,
        try_cast(cast(timestamp as varchar) as double) as seconds,
        try_cast(cast(played_ratio_pct as varchar) as double) as ratio_pct,
        try_cast(cast(track_length_seconds as varchar) as double) as length_s,
        coalesce(cast(event_type as varchar), 'listen') = 'listen' as is_listen,
        timestamp is not null and seconds is null as bad_ts
    from source
),

final as (
    select
        src_row,
        user_id,
        timestamp '2000-01-01' + to_microseconds(cast(round(seconds * 1e6) as bigint)) as ts,
        null::timestamp as ts_end,
        track_id as track_key,
        null::varchar as artist,
        null::varchar as title,
        cast(round(ratio_pct / 100 * length_s * 1000) as bigint) as played_ms,
        cast(round(length_s * 1000) as bigint) as duration_ms,
        null::boolean as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when not is_listen then 'event' when bad_ts then 'ts' end as parse_error
    from parsed
)

select * from final
