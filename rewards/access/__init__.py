"""Broker users for each role of DESIGN.md section 12: who may send which jobs, on RabbitMQ and on Redis.

The roles and the queues each may write come from `rewards.contract`
(`QUEUES_BY_ROLE`); each module here turns them into one broker's rules.
"""
