-- purpose: what each split measures: its listeners, listeners never seen in train, cold targets
-- input views: events (events.parquet: split, session_idx, position, user_id, item_id, is_skip)
-- output columns: split, sessions, listeners, listeners_without_train, sessions_without_train,
--                 targets, cold_targets
-- grain: one row per split present
-- parameters: none
-- notes: a target is a kept play after a session's first play (what a positive query asks for);
--        it is cold when its track has no train play, so no model learned anything about it
--        and HR@k over the split is at most 1 - cold_targets / targets.  A listener without
--        train has no training session at all: under a global time split, whole listeners
--        whose export starts late land in test.
with events as (
    select * from events
),

train_items as (
    select distinct item_id
    from events
    where split = 'train'
),

train_users as (
    select distinct user_id
    from events
    where split = 'train'
),

flagged as (
    select
        e.split,
        e.session_idx,
        e.user_id,
        e.position > 0 and e.is_skip = 0 as is_target,
        ti.item_id is null as cold,
        tu.user_id is null as unseen_user
    from events as e
    left join train_items as ti on e.item_id = ti.item_id
    left join train_users as tu on e.user_id = tu.user_id
),

final as (
    select
        split,
        count(distinct session_idx) as sessions,
        count(distinct user_id) as listeners,
        count(distinct user_id) filter (where unseen_user) as listeners_without_train,
        count(distinct session_idx) filter (where unseen_user) as sessions_without_train,
        count(*) filter (where is_target) as targets,
        count(*) filter (where is_target and cold) as cold_targets
    from flagged
    group by split
)

select * from final
