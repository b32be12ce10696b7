-- purpose: the catalogue: dense, deterministic track ids 1..n (0 is padding)
-- input views: final_plays (kept rows of split, with is_skip and split)
-- output columns: item_id, track_key, artist, title, plays, skips, train_plays
-- grain: one row per distinct track_key
-- parameters: none
-- notes: ids follow play count (descending), then the key, so they never depend on file order.
--        Tracks never played in train keep an id (train_plays = 0): a model cannot learn them,
--        and their valid / test plays stay in the evaluation as honest misses.
with final_plays as (
    select * from final_plays
),

counts as (
    select
        track_key,
        min(artist) as artist,
        min(title) as title,
        count(*) as plays,
        sum(is_skip)::bigint as skips,
        count(*) filter (where split = 'train') as train_plays
    from final_plays
    group by track_key
),

final as (
    select
        row_number() over (order by plays desc, track_key)::int as item_id,
        track_key,
        artist,
        title,
        plays,
        skips,
        train_plays
    from counts
)

select * from final
