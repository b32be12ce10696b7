-- purpose: dense user codes, in user_id order, for the sorted play stream
-- input views: kept (usable plays)
-- output columns: user_code (int32, from 0), user_id
-- grain: one row per distinct user_id
-- parameters: none
with kept as (
    select * from kept
),

users as (
    select distinct user_id from kept
),

final as (
    select
        (row_number() over (order by user_id) - 1)::int as user_code,
        user_id
    from users
)

select * from final
