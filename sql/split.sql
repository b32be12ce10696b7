-- purpose: assign every session to the train / valid / test window by its start time
-- input views: sessions (session, user_code, start_us, end_us: one row per kept session)
-- output columns: session, window_split, straddles
-- grain: one row per session
-- parameters: $valid_frac, $test_frac (fractions of sessions), $per_listener (boolean)
-- notes: sessions are ranked by start (ties: end, user, session); the first
--        n - round(n * valid) - round(n * test) go to train, the next round(n * valid) to valid,
--        the rest to test; no session is cut.  A session still running when the next window's
--        first session starts straddles the boundary: the caller drops it ('straddles_split'),
--        so every train play ends no later than the first valid play starts, and likewise
--        valid / test.  With $per_listener the ranking, the fractions and the boundaries are
--        each listener's own (the listener's last sessions are valid / test), so a listener's
--        test never precedes their training, but one listener's test may precede another's
--        training.  Leave-last-out splitting happens per play, outside this file.
with sessions as (
    select * from sessions
),

ranked as (
    select
        *,
        row_number() over listener_window as r,
        count(*) over (partition by part) as n
    from (select *, if($per_listener, user_code, 0) as part from sessions)
    window listener_window as (partition by part order by start_us, end_us, user_code, session)
),

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
        part,
        min(start_us) filter (where window_split = 'valid') as valid_start,
        min(start_us) filter (where window_split = 'test') as test_start
    from windows
    group by part
),

final as (
    select
        w.session,
        w.window_split,
        coalesce(
            (w.window_split = 'train' and w.end_us > coalesce(b.valid_start, b.test_start))
            or (w.window_split = 'valid' and w.end_us > b.test_start),
            false
        ) as straddles
    from windows as w
    inner join bounds as b on w.part = b.part
)

select * from final
