"""The record: SQLite state of a study plus the plain files a person can read."""
