"""The write side: every change a job makes to PostgreSQL, inside the job's transaction.

`balance` is the one place XP moves (lock the partner, `xp = xp + n`, ledger
rows, audit); the other modules apply one kind of job each (`checkins`,
`quests`, `referrals`, `adjustments`, `partners`) or record what jobs cause
(`streaks`, `badges`, `outbox`, `failures`). Nothing here reads the clock,
the environment or Celery: the job's instant and policy are passed in.
"""
