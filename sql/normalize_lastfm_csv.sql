-- purpose: Last.fm scrobbles as CSV exporters write them (artist, album, track, date; with or
--          without a header line) -> canonical plays
-- input views: raw (artist, album, track, date: all varchar; src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per scrobble (a header line is not a scrobble and is left out)
-- parameters: none
-- notes: the file names nobody, so the user is the export's listener (source_user).  date is
--        the scrobble time, about the play start, in UTC: '31 Jan 2021 22:10' (lastfm-to-csv),
--        ISO 8601, or unix seconds.  Last.fm scrobbles a play only once half the track (or 4
--        minutes) has played, so skipped plays never reach the log: every scrobble is labelled
--        kept (skip_flag false) and the manifest names the skip rule 'none'.  The track key is
--        (artist, track) joined by the unit separator, as these exports carry no track id.
with source as (
    select * from raw
    where not (lower(trim(artist)) = 'artist' and lower(trim(track)) = 'track' and lower(trim(date)) = 'date')
),

parsed as (
    select
        src_row,
        source_user,
        nullif(trim(artist), '') as artist,
        nullif(trim(track), '') as title,
        nullif(trim(date), '') as date_text,
        case
            when regexp_full_match(trim(date), '\d{9,10}')
                then make_timestamp(epoch_us(try(to_timestamp(try_cast(trim(date) as double)))))
            when regexp_full_match(trim(date), '\d{1,2} [A-Za-z]{3} \d{4},? \d\d:\d\d')
                then try_strptime(replace(trim(date), ',', ''), '%d %b %Y %H:%M')
            else make_timestamp(epoch_us(try_cast(trim(date) as timestamptz)))
        end as start_ts
    from source
),

final as (
    select
        src_row,
        source_user as user_id,
        start_ts as ts,
        null::timestamp as ts_end,
        artist || chr(31) || title as track_key,
        artist,
        title,
        null::bigint as played_ms,
        null::bigint as duration_ms,
        false as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when date_text is not null and start_ts is null then 'ts' end as parse_error
    from parsed
)

select * from final
