-- purpose: audit: no two events share a (session_idx, position); returns offending rows
-- input views: events
-- output columns: session_idx, position, copies
-- grain: one row per duplicated slot
-- parameters: none
with events as (
    select * from events
),

final as (
    select
        session_idx,
        position,
        count(*) as copies
    from events
    group by session_idx, position
    having count(*) > 1
)

select * from final
