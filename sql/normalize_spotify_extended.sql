-- purpose: Spotify extended history (Streaming_History_Audio_*.json, endsong_*.json and re-saves
--          under other names) -> canonical plays, each with the skip evidence it carries
-- input views: raw (ts, ms_played, spotify_track_uri, spotify_episode_uri, episode_name,
--              episode_show_name, master_metadata_*, skipped, reason_end, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error + recorded_skip + reason_skip
-- grain: one row per source row
-- parameters: none
-- notes: ts is the play END (UTC, seconds); rows arrive in any order and are sorted later.
--        Spotify filled its `skipped` flag only for plays ending from 2022-10-01 on and before
--        2016: in between it is false on 99.7 % of plays although the listener pressed next on
--        16-51 % of them (P(skipped | fwdbtn) = 0 % there, 95-100 % elsewhere; see SOURCE.md of
--        the real exports).  So recorded_skip is the flag inside those periods only, and
--        reason_skip reads reason_end.  Reasons are sorted by what the recorded flag says of
--        them on 194k plays of 31 listeners: fwdbtn, backbtn, endplay, popup and appload are
--        skipped on 99.4-100 %; trackdone, logout, remote, trackerror and the two
--        unexpected-exit reasons on 0-0.04 % (each reason seen on at least 100 plays).
--        clickrow (37 %), unknown (11 %), rarer or new reasons and null say nothing here.
--        (prep._skip_rule names these lists in the manifest: change both together.)
--        The next play's reason_start was measured too and adds nothing: a play ended by
--        logout or trackdone is never flagged whatever starts the next one.
--        skip_flag feeds kernels/sessions.py: 0 / 1 the recorded flag, 2 / 3 the end reason
--        (kept / skipped), null neither, so the played-time rule decides; only this format
--        emits 2 and 3, which keeps every other format's labels as they were.
--        Podcast episodes (no track uri) are keyed by their episode uri, so --keep-podcasts
--        can keep them.
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
        try_cast(skipped as boolean) as flag,
        lower(trim(cast(reason_end as varchar))) as reason,
        ts is not null and end_ts is null as bad_ts,
        ms_played is not null and played is null as bad_played
    from source
),

evidence as (
    select
        *,
        case
            when end_ts >= timestamp '2022-10-01' or end_ts < timestamp '2016-01-01' then flag
        end as recorded_skip,
        case
            when reason in ('fwdbtn', 'backbtn', 'endplay', 'popup', 'appload') then true
            when
                reason in (
                    'trackdone',
                    'logout',
                    'remote',
                    'trackerror',
                    'unexpected-exit',
                    'unexpected-exit-while-paused'
                )
                then false
        end as reason_skip
    from parsed
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
        case
            when recorded_skip is not null then recorded_skip::tinyint
            when reason_skip is not null then 2 + reason_skip::tinyint
        end::tinyint as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        spotify_track_uri is null as is_podcast,
        case when bad_ts then 'ts' when bad_played then 'played_ms' end as parse_error,
        recorded_skip,
        reason_skip
    from evidence
)

select * from final
