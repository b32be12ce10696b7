-- purpose: cut each user's usable plays into listening sessions
-- input views: kept (clean rows whose drop_reason is null)
-- output columns: every input column + order_ts, session_no (per user, from 0), position (from 0)
-- grain: one row per usable play
-- parameters: $session_gap_s (a new session starts when the pause before a play is STRICTLY
--             longer than this many seconds; a pause exactly equal stays in the session)
-- notes: plays are ordered by their end time when the source gives one (else their start),
--        then the source's position, then source order, so equal timestamps keep file order.
--        The pause is this play's start minus the previous play's end: its end time when the
--        source gives one, else its start plus the played time, else its start.  A source
--        session id (MSSD) always starts a new session where it changes.
with kept as (
    select * from kept
),

ordered as (
    select
        *,
        coalesce(ts_end, ts) as order_ts,
        lag(coalesce(ts_end, ts + to_milliseconds(greatest(coalesce(played_ms, 0), 0)))) over w as prev_end,
        lag(session_hint) over w as prev_hint,
        row_number() over w as user_rn
    from kept
    window w as (partition by user_id order by coalesce(ts_end, ts), position_hint, src_row)
),

starts as (
    select
        *,
        prev_end is null
        or prev_hint is distinct from session_hint
        or (session_hint is null and epoch_ms(ts) - epoch_ms(prev_end) > $session_gap_s * 1000)
            as is_start
    from ordered
),

numbered as (
    select
        * exclude (prev_end, prev_hint),
        sum(is_start::int) over w - 1 as session_no,
        max(case when is_start then user_rn end) over w as start_rn
    from starts
    window w as (
        partition by user_id order by order_ts, position_hint, src_row
        rows between unbounded preceding and current row
    )
),

final as (
    select
        * exclude (user_rn, start_rn, is_start),
        user_rn - start_rn as position
    from numbered
)

select * from final
