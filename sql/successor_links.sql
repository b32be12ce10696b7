-- purpose: link every prepared play to its listener's previous play of the same track, and name the
--          track that followed that earlier play (what history.row_successors reads, a batch at a time)
-- input views: events (events.parquet with file_row_number: a play's index in the file)
-- output columns: event_idx (bigint), prev_idx (bigint, -1: the track is new to the listener),
--                 after_prev (integer, the item that followed prev_idx; 0 = PAD when there is none),
--                 next_idx (bigint, the listener's next play; -1 after the last), item_id (integer)
-- grain: one row per play of events.parquet, in no particular order
-- parameters: none
-- notes: listener-time order is (user_id, ts, session_idx, position), as toolkit/history.py's
--        ListenerOrder sorts; a session of no known listener (null user_id) is a listener of its own.
--        Both window passes spill to disk under DuckDB's memory limit, so the whole log never sits
--        in memory.
with events as (
    select
        file_row_number as event_idx,
        user_id,
        case when user_id is null then session_idx else -1 end as own_session,
        session_idx,
        position,
        item_id,
        ts
    from events
),

followed as (
    select
        *,
        lead(item_id) over listener as next_item,
        lead(event_idx) over listener as next_idx
    from events
    window listener as (partition by user_id, own_session order by ts, session_idx, position)
),

final as (
    select
        event_idx,
        coalesce(lag(event_idx) over same_track, -1) as prev_idx,
        coalesce(lag(next_item) over same_track, 0)::integer as after_prev,
        coalesce(next_idx, -1) as next_idx,
        item_id
    from followed
    window same_track as (partition by user_id, own_session, item_id order by ts, session_idx, position)
)

select * from final
