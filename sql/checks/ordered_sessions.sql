-- purpose: audit: the positions of every session are exactly 0..n-1 and a session belongs to
--          one user and one split (under split 'time'); returns offending sessions
-- input views: events
-- output columns: session_idx, problem
-- grain: one row per bad session
-- parameters: none
-- notes: a grouping, not a sort; that time never runs backwards inside a session is checked on
--        the arrays before they are written (prep._check_order), where it costs one pass.
with events as (
    select * from events
),

per_session as (
    select
        session_idx,
        min(position) as first_position,
        max(position) as last_position,
        count(*) as plays,
        count(distinct user_id) as users
    from events
    group by session_idx
),

final as (
    select
        session_idx,
        case
            when first_position <> 0 or last_position <> plays - 1 then 'position gap'
            when users > 1 then 'session spans users'
        end as problem
    from per_session
)

select * from final
where problem is not null
