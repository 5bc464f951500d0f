"""Orchestrator integrations: Dagster, Airflow and Prefect (each in its own optional extra).

Each module imports its orchestrator at the top, so import the one you use, e.g.
``from backhaul.integrations.dagster import backhaul_assets``. What they share (running a
sync in-process, judging its outcome, talking to ``backhaul serve``) lives in
:mod:`backhaul.integrations.common` and :mod:`backhaul.integrations.remote`.
"""
