"""Presence: per-client sessions from the log, person rules, who was online when."""
