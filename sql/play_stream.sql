-- purpose: the usable plays as narrow numbers for the session pass
-- input views: kept (usable plays: clean.sql's rows without a drop reason)
-- output columns: user_hash, track_hash, order_us, start_us, end_us, played, duration, flag, hint,
--                 position_key, src_row
-- grain: one row per usable play, in no particular order
-- parameters: none
-- notes: no sort here: prep streams the rows out and numpy sorts the usable ones by (user hash,
--        order_us, position_key, src_row) (prep._listening_order), which measured 3x cheaper than
--        an ORDER BY whose wide rows spill past the memory limit.  Order time is the play's end
--        where the source gives it (Spotify), else its start; end_us estimates a missing end as
--        start + played time (the session pass measures pauses from it).  Missing numbers are -1;
--        a missing source position sorts last (position_key = the largest bigint); hint is a
--        hash of the source's session id (a change starts a new session).  Hashes instead of
--        the id strings keep the rows narrow; dictionaries.sql maps them back.
with kept as (
    select * from kept
),

final as (
    select
        hash(user_id) as user_hash,
        hash(track_key) as track_hash,
        epoch_us(coalesce(ts_end, ts)) as order_us,
        epoch_us(ts) as start_us,
        epoch_us(coalesce(ts_end, ts + to_milliseconds(coalesce(played_ms, 0)))) as end_us,
        coalesce(played_ms, -1) as played,
        coalesce(duration_ms, -1) as duration,
        coalesce(skip_flag::tinyint, -1)::tinyint as flag,
        case when session_hint is null then -1 else (hash(session_hint) >> 1)::bigint end as hint,
        coalesce(position_hint, 9223372036854775807) as position_key,
        src_row
    from kept
)

select * from final
