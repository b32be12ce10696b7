-- purpose: audit: null ids, padding ids, skip labels outside {0, 1}, negative play times,
--          unknown split names; returns offending rows
-- input views: events
-- output columns: session_idx, position, problem
-- grain: one row per bad event
-- parameters: none
with events as (
    select * from events
),

final as (
    select
        session_idx,
        position,
        case
            when user_id is null then 'null user'
            when item_id is null or item_id < 1 then 'null or padding item'
            when is_skip not in (0, 1) then 'skip label not 0/1'
            when played_ms < 0 then 'negative played_ms'
            when split not in ('train', 'valid', 'test') then 'unknown split'
        end as problem
    from events
)

select * from final
where problem is not null
