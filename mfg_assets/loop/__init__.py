"""The closed loop, daemon-driven: drift in the plant -> a promoted edge bundle.

`mfg demo --scenario drift` and ``benchmarks/bench_loop.py`` seed a lakehouse with history
(champion, bundles, a first rollout), start the Dagster daemon, the gateway and two edge
runtimes, switch a drift scenario on in the live simulator and from then on only watch:
every run after the onset is launched by a sensor of the daemon. The result is a stage
timeline, the time to recover (onset -> promoted bundle) and model quality before/after.

    scenario.py  what is simulated: the plant, history and live configs, knobs
    seed.py      history -> bronze, silver, features, champion, bundles, first rollout
    services.py  broker, gateway, edge runtimes and the Dagster daemon as subprocesses
    watch.py     the stage timeline, read from the Dagster instance and the lakehouse
    quality.py   the old and the new champion on post-drift hold-out windows
    run.py       the whole loop, and its report
"""
