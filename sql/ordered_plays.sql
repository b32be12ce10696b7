-- purpose: the usable plays as narrow integer columns in listening order, for the session pass
-- input views: kept (usable plays)
-- output columns: user_hash, order_us, start_us, end_us, hint, track_hash, flag, played, duration,
--                 position (the source's own position, -1 where none)
-- grain: one row per usable play, ordered by user (by the hash of its id, which groups a user's
--        plays together), then order time, then the source's own position, then source row, so
--        equal timestamps keep file order
-- parameters: none
-- notes: order time is the play's end where the source gives it (Spotify), else its start.
--        end_us estimates the end as start + played time when only the start is known; the
--        session pass measures pauses from it.  Missing values become -1; hint is a hash of the
--        source's session id (a change starts a new session).  Hashes instead of the id strings
--        keep the sort narrow; dictionaries.sql maps them back.
with kept as (
    select * from kept
),

final as (
    select
        hash(user_id) as user_hash,
        epoch_us(coalesce(ts_end, ts)) as order_us,
        epoch_us(ts) as start_us,
        epoch_us(coalesce(ts_end, ts + to_milliseconds(coalesce(played_ms, 0)))) as end_us,
        case when session_hint is null then -1 else (hash(session_hint) >> 1)::bigint end as hint,
        hash(track_key) as track_hash,
        coalesce(skip_flag::tinyint, -1)::tinyint as flag,
        coalesce(played_ms, -1) as played,
        coalesce(duration_ms, -1) as duration,
        coalesce(position_hint, -1) as position,
        position_hint,
        src_row
    from kept
)

select * exclude (position_hint, src_row) from final
order by user_hash, order_us, position_hint, src_row
