"""What a run tells: events, results, summary, progress, JSON lines, alerts and task logs."""
