-- purpose: label every sessioned play as skipped (1) or not (0), recording which rule decided
-- input views: sessioned (output of sessionize)
-- output columns: every input column + is_skip (tinyint), skip_source
-- grain: one row per play
-- parameters: $skip_ms (bigint: a play shorter than this is a skip),
--             $skip_ratio (double or null: when the track length is known, played / length
--             below this is a skip; null keeps the $skip_ms rule)
-- notes: rules in order: the source's explicit flag ('explicit'); the played ratio ('ratio');
--        the played time ('played_ms'); for logs with start times only, the pause to the next
--        play of the same session ('gap'); the last play of such a session cannot be judged and
--        counts as not skipped ('unknown').
with sessioned as (
    select * from sessioned
),

with_next as (
    select
        *,
        lead(ts) over (partition by user_id, session_no order by position) as next_ts
    from sessioned
),

final as (
    select
        * exclude (next_ts),
        case
            when skip_flag is not null then skip_flag::tinyint
            when played_ms is not null and duration_ms is not null and $skip_ratio is not null
                then (played_ms < $skip_ratio * duration_ms)::tinyint
            when played_ms is not null then (played_ms < $skip_ms)::tinyint
            when next_ts is not null then (epoch_ms(next_ts) - epoch_ms(ts) < $skip_ms)::tinyint
            else 0::tinyint
        end as is_skip,
        case
            when skip_flag is not null then 'explicit'
            when played_ms is not null and duration_ms is not null and $skip_ratio is not null then 'ratio'
            when played_ms is not null then 'played_ms'
            when next_ts is not null then 'gap'
            else 'unknown'
        end as skip_source
    from with_next
)

select * from final
