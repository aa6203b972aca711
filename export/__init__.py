"""psa-finn stage package: export."""
