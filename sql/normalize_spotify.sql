-- purpose: Spotify account-data history (StreamingHistory*.json) -> canonical plays
-- input views: raw (endTime, artistName, trackName, msPlayed, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: none
-- notes: endTime is the play END at minute resolution; the start is estimated as end - msPlayed.
--        The track key is (artist, track) joined by the unit separator, as the export has no uri.
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        source_user,
        artistName as artist,
        trackName as title,
        try_strptime(cast(endTime as varchar), '%Y-%m-%d %H:%M') as end_ts,
        try_cast(msPlayed as bigint) as played,
        endTime is not null and end_ts is null as bad_ts,
        msPlayed is not null and played is null as bad_played
    from source
),

final as (
    select
        src_row,
        source_user as user_id,
        end_ts - to_milliseconds(greatest(coalesce(played, 0), 0)) as ts,
        end_ts as ts_end,
        artist || chr(31) || title as track_key,
        artist,
        title,
        played as played_ms,
        null::bigint as duration_ms,
        null::boolean as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when bad_ts then 'ts' when bad_played then 'played_ms' end as parse_error
    from parsed
)

select * from final
