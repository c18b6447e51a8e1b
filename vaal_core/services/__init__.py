"""What the app (and the CLI) do with a project beyond the engine: run
long jobs in background workers, keep the recent-projects list, walk the
labeling order, move labels in and out as files, and manage Demo runs."""
