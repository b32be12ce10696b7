-- purpose: the distinct users and tracks of the usable plays, with the hash that codes them
-- input views: kept (usable plays)
-- output columns: is_user (boolean), key (user_id or track_key), key_hash (ubigint, hash(key)),
--                 artist, title (tracks only: the smallest name seen, never file-order dependent),
--                 plays (usable plays of the user or track: sizes prep's buckets of users)
-- grain: one row per distinct user_id and one per distinct track_key
-- parameters: none
-- notes: one scan with two grouping sets; play_stream.sql carries hash(user_id) and
--        hash(track_key) instead of the strings, and prep maps them back to these rows.
with kept as (
    select * from kept
),

grouped as (
    select
        grouping(user_id) = 0 as is_user,
        coalesce(user_id, track_key) as key,
        min(artist) as artist,
        min(title) as title,
        count(*) as plays
    from kept
    group by grouping sets ((user_id), (track_key))
),

final as (
    select
        is_user,
        key,
        hash(key) as key_hash,
        case when is_user then null else artist end as artist,
        case when is_user then null else title end as title,
        plays
    from grouped
)

select * from final
