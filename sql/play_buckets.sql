-- purpose: the usable plays with the bucket of listeners each belongs to, for the bucketed prep
-- input views: stream (play_stream.sql's rows), user_buckets (user_hash, bucket: one row per user)
-- output columns: every stream column + bucket
-- grain: one row per usable play
-- parameters: none
-- notes: buckets are contiguous ranges of users in hash order (toolkit/buckets.py::plan), given
--        as a small table joined on the hash: every play's user is in the user dictionary, so
--        the inner join keeps every play.  Written partitioned by bucket, one scan of the log.
with stream as (
    select * from stream
),

user_buckets as (
    select * from user_buckets
),

final as (
    select
        s.*,
        b.bucket
    from stream as s
    inner join user_buckets as b on s.user_hash = b.user_hash
)

select * from final
