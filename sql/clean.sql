-- purpose: mark every canonical play with the first reason it cannot be used (null = usable)
-- input views: plays (schema.PLAY_COLUMNS + parse_error)
-- output columns: every input column + drop_reason
-- grain: one row per input row (nothing is removed here, so every row is accounted for)
-- parameters: $drop_podcasts (boolean), $min_ts, $max_ts (timestamps outside are impossible),
--             $max_played_ms (bigint; longer plays are counted as overlong)
-- notes: a per-row test only, so it streams; exact duplicates are found later, in the sorted
--        stream, where copies are neighbours (kernels/sessions.py::mark_duplicates).
with plays as (
    select * from plays
),

final as (
    select
        *,
        case
            when parse_error = 'event' then 'not_a_listen'
            when user_id is null or user_id = '' then 'null_user'
            when parse_error = 'ts' then 'unparseable_ts'
            when parse_error = 'played_ms' then 'unparseable_played_ms'
            when ts is null then 'null_ts'
            when is_podcast and $drop_podcasts then 'podcast'
            when track_key is null or track_key = '' then 'null_track'
            when ts < $min_ts or ts > $max_ts then 'impossible_time'
            when played_ms < 0 then 'negative_played_ms'
            when played_ms > $max_played_ms then 'overlong_play'
        end as drop_reason
    from plays
)

select * from final
