"""psa-finn stage package: custom_ops/fpgadataflow."""
