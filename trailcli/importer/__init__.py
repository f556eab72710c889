"""Bringing history kept by other tools (Ahoy's database tables) into trail's tables."""
