-- purpose: audit: positions of a session are 0..n-1 and time never runs backwards inside it;
--          returns offending rows
-- input views: events
-- output columns: session_idx, position, problem
-- grain: one row per bad event
-- parameters: none
with events as (
    select * from events
),

steps as (
    select
        session_idx,
        position,
        ts,
        lag(ts) over (partition by session_idx order by position) as prev_ts,
        row_number() over (partition by session_idx order by position) - 1 as expected_position,
        count(distinct user_id) over (partition by session_idx) as users
    from events
),

final as (
    select
        session_idx,
        position,
        case
            when position <> expected_position then 'position gap'
            when users > 1 then 'session spans users'
            when ts < prev_ts then 'time runs backwards'
        end as problem
    from steps
)

select * from final
where problem is not null
