"""Unattended runs: schedules, the scheduler, and the workers that take runs from a queue.

See docs/scheduling.md.
"""
