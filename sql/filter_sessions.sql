-- purpose: session-level filters: collapse consecutive repeats, rare tracks, short sessions
-- input views: labelled (output of label_skips)
-- output columns: every input column + drop_reason (null = kept)
-- grain: one row per play
-- parameters: $collapse_repeats (boolean: a play of the same track as the play just before it
--             in the session is dropped), $min_item_plays (tracks with fewer plays, counted over
--             the whole log after collapsing, are dropped), $min_session_len (sessions with fewer
--             remaining plays are dropped)
with labelled as (
    select * from labelled
),

repeats as (
    select
        *,
        $collapse_repeats
        and coalesce(track_key = lag(track_key) over (
            partition by user_id, session_no order by position
        ), false) as is_repeat
    from labelled
),

item_counts as (
    select
        *,
        sum((not is_repeat)::int) over (partition by track_key) as item_plays
    from repeats
),

session_counts as (
    select
        *,
        sum((not is_repeat and item_plays >= $min_item_plays)::int) over (
            partition by user_id, session_no
        ) as session_len
    from item_counts
),

final as (
    select
        * exclude (is_repeat, item_plays, session_len),
        case
            when is_repeat then 'repeat_collapsed'
            when item_plays < $min_item_plays then 'rare_track'
            when session_len < $min_session_len then 'short_session'
        end as drop_reason
    from session_counts
)

select * from final
