-- purpose: assign every kept play to train / valid / test
-- input views: filtered (kept rows of filter_sessions)
-- output columns: every input column + split, drop_reason (null = kept)
-- grain: one row per play
-- parameters: $split_mode ('time' | 'last'), $valid_frac, $test_frac (fractions of sessions)
-- notes: 'time' ranks sessions by start time (ties: end time, user, session) and gives the
--        earliest n - round(n * valid) - round(n * test) to train, then valid, then test; no session is cut.  A session still running
--        when the next window's first session starts is dropped as 'straddles_split', so every
--        train play ends no later than the first valid play starts, and likewise valid / test.
--        'last' (leave-last-out, leaky across time) keeps every session whole and marks its last
--        play test, the one before valid and the rest train.
with filtered as (
    select * from filtered
),

sessions as (
    select
        user_id,
        session_no,
        min(ts) as start_ts,
        max(order_ts) as end_ts,
        count(*) as n_plays
    from filtered
    group by user_id, session_no
),

ranked as (
    select
        *,
        row_number() over (order by start_ts, end_ts, user_id, session_no) as r,
        count(*) over () as n
    from sessions
),

-- whole numbers of sessions per window (rounded), so float fractions never shift a boundary
sizes as (
    select
        *,
        n - round(n * $valid_frac) - round(n * $test_frac) as n_train,
        n - round(n * $test_frac) as n_train_valid
    from ranked
),

windows as (
    select
        *,
        case
            when r <= n_train then 'train'
            when r <= n_train_valid then 'valid'
            else 'test'
        end as window_split
    from sizes
),

bounds as (
    select
        min(start_ts) filter (where window_split = 'valid') as valid_start,
        min(start_ts) filter (where window_split = 'test') as test_start
    from windows
),

session_splits as (
    select
        w.user_id,
        w.session_no,
        w.window_split,
        (w.window_split = 'train' and w.end_ts > coalesce(b.valid_start, b.test_start))
        or (w.window_split = 'valid' and w.end_ts > b.test_start) as straddles
    from windows as w
    cross join bounds as b
),

final as (
    select
        f.*,
        case
            when $split_mode = 'last' then
                case row_number() over s
                    when 1 then 'test'
                    when 2 then 'valid'
                    else 'train'
                end
            else ss.window_split
        end as split,
        case when $split_mode = 'time' and ss.straddles then 'straddles_split' end as drop_reason
    from filtered as f
    inner join session_splits as ss using (user_id, session_no)
    window s as (partition by f.user_id, f.session_no order by f.position desc)
)

select * from final
