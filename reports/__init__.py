"""psa-finn stage package: reports (tables, plots, demo)."""
