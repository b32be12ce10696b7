-- purpose: any table whose columns were mapped with --col -> canonical plays
-- input views: raw (user_raw, ts_raw, track_raw, played_raw, duration_raw, skipped_raw,
--              session_raw, artist_raw, title_raw, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: $ts_unit ('s' | 'ms' epochs, 'text', 'timestamp'); the time is the play start, UTC
-- notes: an epoch outside TIMESTAMP's range is an unparseable time (try), not a failed read.
--        times go through epoch_us + make_timestamp: the same instant as a ::timestamp cast at
--        UTC, without a time-zone conversion per row (measured 10x cheaper on 20M plays)
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        nullif(cast(user_raw as varchar), '') as user_id,
        case
            when $ts_unit = 'timestamp' then make_timestamp(epoch_us(try_cast(ts_raw as timestamptz)))
            when $ts_unit = 's' then make_timestamp(epoch_us(try(to_timestamp(try_cast(ts_raw as double)))))
            when $ts_unit = 'ms' then make_timestamp(epoch_us(try(to_timestamp(try_cast(ts_raw as double) / 1000))))
            else make_timestamp(epoch_us(try_cast(ts_raw as timestamptz)))
        end as start_ts,
        nullif(cast(track_raw as varchar), '') as track_key,
        cast(artist_raw as varchar) as artist,
        cast(title_raw as varchar) as title,
        try(try_cast(played_raw as double)::bigint) as played,
        try(try_cast(duration_raw as double)::bigint) as duration,
        case
            when lower(cast(skipped_raw as varchar)) in ('1', 'true', 't', 'yes', 'y') then true
            when lower(cast(skipped_raw as varchar)) in ('0', 'false', 'f', 'no', 'n') then false
        end as skip_flag,
        cast(session_raw as varchar) as session_hint,
        ts_raw is not null and start_ts is null as bad_ts,
        played_raw is not null and played is null as bad_played
    from source
),

final as (
    select
        src_row,
        user_id,
        start_ts as ts,
        null::timestamp as ts_end,
        track_key,
        artist,
        title,
        played as played_ms,
        duration as duration_ms,
        skip_flag,
        session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when bad_ts then 'ts' when bad_played then 'played_ms' end as parse_error
    from parsed
)

select * from final
