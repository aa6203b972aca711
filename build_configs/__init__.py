"""psa-finn stage package: build_configs."""
