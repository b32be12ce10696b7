-- purpose: the usable plays as narrow integer columns in listening order, for the session pass
-- input views: kept (usable plays), users (users.sql), tracks (tracks.sql)
-- output columns: user_code, order_us, start_us, end_us, hint, track_code, flag, played, duration,
--                 position (the source's own position, -1 where none), src_row
-- grain: one row per usable play, ordered by user, then order time, then the source's own
--        position, then source row (so equal timestamps keep file order)
-- parameters: none
-- notes: order time is the play's end where the source gives it (Spotify), else its start.
--        end_us estimates the end as start + played time when only the start is known; the
--        session pass measures pauses from it.  Missing values become -1; hint is a hash of the
--        source's session id (a change starts a new session).
with kept as (
    select * from kept
),

users as (
    select * from users
),

tracks as (
    select * from tracks
),

final as (
    select
        u.user_code,
        epoch_us(coalesce(k.ts_end, k.ts)) as order_us,
        epoch_us(k.ts) as start_us,
        epoch_us(coalesce(k.ts_end, k.ts + to_milliseconds(coalesce(k.played_ms, 0)))) as end_us,
        case when k.session_hint is null then -1 else (hash(k.session_hint) >> 1)::bigint end as hint,
        t.track_code,
        coalesce(k.skip_flag::tinyint, -1)::tinyint as flag,
        coalesce(k.played_ms, -1) as played,
        coalesce(k.duration_ms, -1) as duration,
        coalesce(k.position_hint, -1) as position,
        k.position_hint,
        k.src_row
    from kept as k
    inner join users as u using (user_id)
    inner join tracks as t using (track_key)
)

select * exclude (position_hint) from final
order by user_code, order_us, position_hint, src_row
