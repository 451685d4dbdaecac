"""bike.jobs: the `bike` command and the Ray programs behind it (tagging, training, adaptation, evaluation)."""
