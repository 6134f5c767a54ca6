"""The chaos suite (`make chaos`, `python -m chaos`): faults against the whole stack, judged by
an invariant checker once the system has quiesced. See chaos/runner.py and the README's
"Reliability" section."""
