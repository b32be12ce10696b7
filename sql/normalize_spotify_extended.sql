-- purpose: Spotify extended history (Streaming_History_Audio_*.json, endsong_*.json) -> canonical plays
-- input views: raw (ts, ms_played, spotify_track_uri, spotify_episode_uri, episode_name,
--              episode_show_name, master_metadata_*, skipped, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per source row
-- parameters: none
-- notes: ts is the play END (UTC, seconds); rows arrive in any order and are sorted later.
--        skipped is Spotify's own flag and is null on most rows of 2021-era endsong exports;
--        those rows fall back to the played-time rule in label_skips.  Podcast episodes (no
--        track uri) are keyed by their episode uri, so --keep-podcasts can keep them.
with source as (
    select * from raw
),

parsed as (
    select
        src_row,
        source_user,
        spotify_track_uri,
        coalesce(spotify_track_uri, spotify_episode_uri) as uri,
        coalesce(master_metadata_album_artist_name, episode_show_name) as artist,
        coalesce(master_metadata_track_name, episode_name) as title,
        make_timestamp(epoch_us(try_cast(cast(ts as varchar) as timestamptz))) as end_ts,
        try_cast(ms_played as bigint) as played,
        try_cast(skipped as boolean) as skip_flag,
        ts is not null and end_ts is null as bad_ts,
        ms_played is not null and played is null as bad_played
    from source
),

final as (
    select
        src_row,
        source_user as user_id,
        end_ts - to_milliseconds(greatest(coalesce(played, 0), 0)) as ts,
        end_ts as ts_end,
        uri as track_key,
        artist,
        title,
        played as played_ms,
        null::bigint as duration_ms,
        skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        spotify_track_uri is null as is_podcast,
        case when bad_ts then 'ts' when bad_played then 'played_ms' end as parse_error
    from parsed
)

select * from final
