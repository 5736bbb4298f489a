"""Data: one preparation step per task turns a raw source into prepared arrays on disk."""
