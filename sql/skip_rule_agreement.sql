-- purpose: how well each fallback skip rule agrees with the source's own flag, measured on the
--          plays where that flag is recorded (what justifies using the rules where it is not)
-- input views: kept (usable plays: clean.sql's rows without a drop reason, with the
--              recorded_skip and reason_skip columns of normalize_spotify_extended.sql)
-- output columns: rule, plays, agree, flag_skips, rule_skips, both_skips, agreement, precision,
--                 recall
-- grain: one row per rule: 'reason' (the end reason, where it decides), 'played_ms'
--        (played_ms < $skip_ms) and 'reason_else_played_ms' (the chain prep applies)
-- parameters: $skip_ms (bigint, the played-time threshold of PrepConfig.skip_ms)
-- notes: plays = recorded-flag plays the rule decides; precision and recall treat the flag
--        as the truth and skip as the positive class; null where a denominator is 0.
--        Counted before exact duplicates are removed (prep finds those later, in the sorted
--        stream), so copies count once each.
with kept as (
    select * from kept
),

judged as (
    select
        recorded_skip as flag,
        reason_skip,
        played_ms < $skip_ms as short
    from kept
    where recorded_skip is not null
),

verdicts as (
    unpivot (
        select
            flag,
            reason_skip as reason,
            short as played_ms,
            coalesce(reason_skip, short) as reason_else_played_ms
        from judged
    )
    on reason, played_ms, reason_else_played_ms
    into name rule value says_skip
),

counted as (
    select
        rule,
        count(*) as plays,
        count(*) filter (where says_skip = flag) as agree,
        count(*) filter (where flag) as flag_skips,
        count(*) filter (where says_skip) as rule_skips,
        count(*) filter (where says_skip and flag) as both_skips
    from verdicts
    group by rule
),

rules as (
    select *
    from (values ('reason', 1), ('played_ms', 2), ('reason_else_played_ms', 3)) as r (rule, rule_order)
),

final as (
    select
        rules.rule,
        coalesce(counted.plays, 0) as plays,
        coalesce(counted.agree, 0) as agree,
        coalesce(counted.flag_skips, 0) as flag_skips,
        coalesce(counted.rule_skips, 0) as rule_skips,
        coalesce(counted.both_skips, 0) as both_skips,
        counted.agree / nullif(counted.plays, 0) as agreement,
        counted.both_skips / nullif(counted.rule_skips, 0) as precision,
        counted.both_skips / nullif(counted.flag_skips, 0) as recall
    from rules
    left join counted on rules.rule = counted.rule
    order by rules.rule_order
)

select * from final
