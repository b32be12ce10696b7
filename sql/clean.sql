-- purpose: mark every canonical play with the first reason it cannot be used (null = usable)
-- input views: plays (schema.PLAY_COLUMNS + parse_error)
-- output columns: every input column + drop_reason
-- grain: one row per input row (nothing is removed here, so every row is accounted for)
-- parameters: $drop_podcasts (boolean), $min_ts, $max_ts (timestamps outside are impossible),
--             $max_played_ms (bigint; longer plays are counted as overlong)
-- notes: exact duplicates (same user, time, track, played time and source position) keep their
--        first copy by source row; they are found by a grouping, not a sort.
with plays as (
    select * from plays
),

copies as (
    select
        user_id,
        ts,
        track_key,
        coalesce(played_ms, -1) as played_key,
        coalesce(position_hint, -1) as position_key,
        min(src_row) as first_row
    from plays
    group by all
    having count(*) > 1
),

marked as (
    select
        p.*,
        c.first_row is not null and p.src_row <> c.first_row as is_copy
    from plays as p
    left join copies as c
        on p.user_id = c.user_id
        and p.ts = c.ts
        and p.track_key = c.track_key
        and coalesce(p.played_ms, -1) = c.played_key
        and coalesce(p.position_hint, -1) = c.position_key
),

final as (
    select
        * exclude (is_copy),
        case
            when user_id is null or user_id = '' then 'null_user'
            when parse_error = 'ts' then 'unparseable_ts'
            when parse_error = 'played_ms' then 'unparseable_played_ms'
            when ts is null then 'null_ts'
            when is_podcast and $drop_podcasts then 'podcast'
            when track_key is null or track_key = '' then 'null_track'
            when ts < $min_ts or ts > $max_ts then 'impossible_time'
            when played_ms < 0 then 'negative_played_ms'
            when played_ms > $max_played_ms then 'overlong_play'
            when is_copy then 'exact_duplicate'
        end as drop_reason
    from marked
)

select * from final
