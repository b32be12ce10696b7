-- purpose: ListenBrainz listens (an export's listens/<year>/<month>.jsonl, or any JSON / JSONL of
--          listen objects) -> canonical plays, hated recordings marked as skips
-- input views: raw (listened_at varchar, recording_msid varchar, track_metadata json, src_row,
--              source_user); feedback (source_user, recording_mbid, recording_msid, score,
--              created: the export's feedback.jsonl, possibly empty)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per listen
-- parameters: none
-- notes: listened_at is the listen start in unix seconds (ISO text is read too).  A client
--        submits a listen only once half the track (or 4 minutes) has played, so skipped plays
--        never reach the log and nothing in a listen says how long it played.  The one negative
--        signal is feedback: a recording the listener hated (score -1, the latest feedback on it)
--        makes each listen of it a skip (skip_flag true); every other listen is kept (false).
--        additional_info.duration_ms, when a client sent it, is the track length.  The track key
--        is the MusicBrainz recording id (the server's mapping, else the client's), else the
--        MessyBrainz id of the submitted text, else (artist, track).
with source as (
    select * from raw
),

feedback as (
    select * from feedback
),

latest as (
    select
        source_user,
        nullif(recording_mbid, '') as recording_mbid,
        nullif(recording_msid, '') as recording_msid,
        try_cast(score as bigint) as score,
        row_number() over (
            partition by source_user, coalesce(nullif(recording_mbid, ''), nullif(recording_msid, ''))
            order by try_cast(created as double) desc nulls last
        ) as newest
    from feedback
),

hated_mbid as (
    select distinct
        source_user,
        recording_mbid
    from latest
    where newest = 1 and score = -1 and recording_mbid is not null
),

hated_msid as (
    select distinct
        source_user,
        recording_msid
    from latest
    where newest = 1 and score = -1 and recording_msid is not null
),

parsed as (
    select
        src_row,
        source_user,
        case
            when regexp_full_match(trim(listened_at), '\d+(\.\d+)?')
                then make_timestamp(epoch_us(try(to_timestamp(try_cast(trim(listened_at) as double)))))
            else make_timestamp(epoch_us(try_cast(listened_at as timestamptz)))
        end as start_ts,
        nullif(json_extract_string(track_metadata, '$.artist_name'), '') as artist,
        nullif(json_extract_string(track_metadata, '$.track_name'), '') as title,
        coalesce(
            nullif(json_extract_string(track_metadata, '$.mbid_mapping.recording_mbid'), ''),
            nullif(json_extract_string(track_metadata, '$.additional_info.recording_mbid'), '')
        ) as recording_mbid,
        coalesce(
            nullif(recording_msid, ''),
            nullif(json_extract_string(track_metadata, '$.additional_info.recording_msid'), '')
        ) as recording_msid,
        try(try_cast(json_extract_string(track_metadata, '$.additional_info.duration_ms') as double)::bigint)
            as duration,
        listened_at is not null and start_ts is null as bad_ts
    from source
),

marked as (
    select
        p.*,
        m.recording_mbid is not null or s.recording_msid is not null as hated
    from parsed as p
    left join hated_mbid as m
        on p.source_user = m.source_user and p.recording_mbid = m.recording_mbid
    left join hated_msid as s
        on p.source_user = s.source_user and p.recording_msid = s.recording_msid
),

final as (
    select
        src_row,
        source_user as user_id,
        start_ts as ts,
        null::timestamp as ts_end,
        coalesce(recording_mbid, recording_msid, artist || chr(31) || title) as track_key,
        artist,
        title,
        null::bigint as played_ms,
        duration as duration_ms,
        hated as skip_flag,
        null::varchar as session_hint,
        null::bigint as position_hint,
        false as is_podcast,
        case when bad_ts then 'ts' end as parse_error
    from marked
)

select * from final
