-- purpose: Last.fm-1K style headerless TSV -> canonical plays
-- input views: raw (column0 user, column1 ISO time, column2 artist mbid, column3 artist,
--              column4 track mbid, column5 track; all varchar)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: none
-- notes: the timestamp is the scrobble (about the play start).  Last.fm scrobbles a play only
--        once half the track (or 4 minutes) has played, so skipped plays never reach the log,
--        and a short gap to the next scrobble cannot be told from a short track without track
--        lengths: every scrobble is labelled kept (skip_flag false) and the manifest names the
--        skip rule 'none'.  The track key is the MusicBrainz id when present, otherwise
--        (artist, track).
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        nullif(column0, '') as user_id,
        make_timestamp(epoch_us(try_cast(column1 as timestamptz))) as start_ts,
        nullif(column3, '') as artist,
        nullif(column5, '') as title,
        nullif(column4, '') as track_mbid,
        column1 is not null and start_ts is null as bad_ts
    from source
),

final as (
    select
        src_row,
        user_id,
        start_ts as ts,
        null::timestamp as ts_end,
        coalesce(track_mbid, artist || chr(31) || title) as track_key,
        artist,
        title,
        null::bigint as played_ms,
        null::bigint as duration_ms,
        false as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when bad_ts then 'ts' end as parse_error
    from parsed
)

select * from final
