-- Account health: one row per account, from its users' last 14 days of activity.
-- "Now" is the warehouse's demo_clock, not now(), so the result is reproducible.
WITH clock AS (
    SELECT as_of FROM demo_clock
),
activity AS (
    SELECT
        u.account_id,
        count(e.event_id) AS events_14d,
        count(DISTINCT e.user_id) AS active_users_14d
    FROM users AS u
    CROSS JOIN clock AS c
    LEFT JOIN events AS e
        ON e.user_id = u.user_id
        AND e.occurred_at > c.as_of - INTERVAL 14 DAY
        AND e.occurred_at <= c.as_of
    GROUP BY u.account_id
),
people AS (
    SELECT account_id, count(*) AS users, max(last_seen_at) AS last_seen_at
    FROM users
    GROUP BY account_id
)
SELECT
    a.account_id,
    a.name,
    a.domain,
    a.industry,
    a.country,
    a.plan,
    s.status AS subscription_status,
    a.seats,
    a.mrr,
    coalesce(p.users, 0) AS users,
    coalesce(x.active_users_14d, 0) AS active_users_14d,
    coalesce(x.events_14d, 0) AS events_14d,
    -- share of known users active lately (0-100); an account with no users scores 0
    CAST(CASE WHEN coalesce(p.users, 0) = 0 THEN 0
         ELSE round(100.0 * coalesce(x.active_users_14d, 0) / p.users) END AS INTEGER)
        AS health_score,
    (a.plan <> 'free' AND s.status IN ('active', 'past_due')
        AND coalesce(x.active_users_14d, 0) * 4 < coalesce(p.users, 0)) AS at_risk,
    p.last_seen_at
FROM accounts AS a
JOIN subscriptions AS s ON s.account_id = a.account_id
LEFT JOIN people AS p ON p.account_id = a.account_id
LEFT JOIN activity AS x ON x.account_id = a.account_id
ORDER BY a.account_id
