"""psa-finn stage package: transforms."""
