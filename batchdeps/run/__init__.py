"""Running a plan: the session that assembles a run, the runner loop and where attempts execute."""
