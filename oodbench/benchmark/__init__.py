"""The harness: data, shifts, suites, models, representation cache, metrics, runner, results, CLI."""
