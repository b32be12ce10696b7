-- purpose: the prepared event table written to events.parquet
-- input views: final_plays (kept rows of split), items (output of items.sql)
-- output columns: schema.EVENTS_SCHEMA (split, session_idx, position, user_id, item_id, ts,
--                 played_ms, is_skip)
-- grain: one row per kept play, ordered by session_idx then position
-- parameters: none
-- notes: session_idx numbers sessions 0..n-1 with train first, then valid, then test, each by
--        start time, so every split is one contiguous block; positions are renumbered from 0
--        after filtering.  ts is the time plays are ordered by: the play's end where the
--        source gives it (Spotify), else its start.  Under split 'last' a session spans splits and is numbered once.
with final_plays as (
    select * from final_plays
),

items as (
    select * from items
),

sessions as (
    select
        user_id,
        session_no,
        min(case split when 'train' then 0 when 'valid' then 1 else 2 end) as split_rank,
        min(ts) as start_ts
    from final_plays
    group by user_id, session_no
),

numbered as (
    select
        user_id,
        session_no,
        row_number() over (order by split_rank, start_ts, user_id, session_no) - 1 as session_idx
    from sessions
),

final as (
    select
        p.split,
        n.session_idx,
        (row_number() over (partition by n.session_idx order by p.position) - 1)::int as position,
        p.user_id,
        i.item_id,
        p.order_ts as ts,
        p.played_ms,
        p.is_skip::tinyint as is_skip
    from final_plays as p
    inner join numbered as n using (user_id, session_no)
    inner join items as i using (track_key)
)

select * from final
order by session_idx, position
