"""Infrastructure shared by every stage (nothing stage-specific lives here)."""
